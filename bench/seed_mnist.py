"""The seed's MNIST model: the engine against a plain hand-written PyTorch loop, same process.

Model: Flatten, Dense 128 relu, Dense 10 softmax; Adam lr 1e-3, batch 32, pixels scaled to
[0, 1]. As in the tutorial (`model.fit(x_train, y_train, epochs=5)`), both loops train on all
60,000 training images by default (`--val-split 0.1` holds out the engine's default validation
split from both). Same thread settings; the plain loop keeps the data as tensors and batches by
index (the fast way, not DataLoader).
Last line: the ratio engine/plain of training-loop time (<= 1.10 is the target).

    python bench/seed_mnist.py [--mnist DIR] [--epochs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from app.datasets import registry  # noqa: E402
from app.engine.loop import train  # noqa: E402
from app.engine.types import ListSink, TrainConfig, TrainJob  # noqa: E402

SPEC = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


def plain_loop(data, epochs: int, seed: int = 0) -> tuple[float, float]:
    """A good hand-written loop: tensors in memory, one permutation per epoch, default Adam."""
    torch.manual_seed(seed)
    x_train = torch.from_numpy(data.x_train).float() / 255
    y_train = torch.from_numpy(data.y_train)
    x_test = torch.from_numpy(data.x_test).float() / 255
    y_test = torch.from_numpy(data.y_test)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y_train))
        xs, ys = x_train[perm], y_train[perm]
        for i in range(0, len(ys), 32):
            loss = F.cross_entropy(model(xs[i:i + 32]), ys[i:i + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return accuracy, elapsed


def engine_run(data, epochs: int, workdir: Path, seed: int = 0,
               val_split: float = 0.0) -> tuple[float, float, float]:
    """(test accuracy, training-loop seconds, whole-run seconds) for the engine."""
    config = TrainConfig(epochs=epochs, batch_size=32, seed=seed, device="cpu", val_split=val_split)
    job = TrainJob(spec=SPEC, config=config, checkpoint_dir=workdir / "ckpt", artifacts_dir=workdir / "export")
    sink = ListSink()
    start = time.perf_counter()
    result = train(job, data, sink)
    whole = time.perf_counter() - start
    loop_time = sum(e["epoch_time"] for e in sink.of("epoch"))
    return result.test_accuracy, loop_time, whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ROOT / ".." / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the same seed drives both loops")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both loops (0: default)")
    parser.add_argument("--val-split", type=float, default=0.0,
                        help="fraction of the training set held out from both loops (the tutorial: 0)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        registry.import_idx("mnist", args.mnist, tmp)
        data = registry.load_dataset("mnist", tmp, val_split=args.val_split, seed=args.seed)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(data.y_train)} training samples")
        plain_acc, plain_time = plain_loop(data, args.epochs, args.seed)
        print(f"plain loop : test accuracy {plain_acc:.4f}, training {plain_time:.2f} s")
        acc, loop_time, whole = engine_run(data, args.epochs, Path(tmp), args.seed, args.val_split)
        print(f"engine     : test accuracy {acc:.4f}, training {loop_time:.2f} s "
              f"(whole run with validation, checkpoints, exports: {whole:.2f} s)")
    print(f"ratio engine/plain (training loop): {loop_time / plain_time:.3f}; "
          f"whole run: {whole / plain_time:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
