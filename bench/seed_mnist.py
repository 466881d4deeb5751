"""The tutorial's MNIST MLP: the engine against the fair reference loop, interleaved, same process.

Model: Flatten, Dense 128 relu, Dense 10 softmax; Adam lr 1e-3, batch 32, pixels scaled to [0, 1],
all 60,000 training images (the tutorial's `model.fit(x_train, y_train, epochs=5)`). The reference
is bench/harness.py's `reference_loop` (pre-loaded tensors, one permutation per epoch and contiguous
slices, fused Adam where available, `zero_grad(set_to_none=True)`). Both sides run in this process
with the same torch thread count, A B A B ..., and the same seed in each pair.

Engine time is its training loop: the sum of the `epoch` events' `epoch_time` (what
app/runs/figures.py calls training time). The whole `train()` call (data to device, warm-up,
checkpoints, test evaluation, exports) is reported beside it.

    .venv/bin/python bench/seed_mnist.py [--epochs 5] [--pairs 3] [--threads 1] [--timeout 900]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def main() -> int:
    p = harness.parser(__doc__, timeout=900)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="the same seed drives both loops")
    args = p.parse_args()

    import torch

    from app.datasets import registry

    torch.set_num_threads(args.threads)
    harness.header(f"engine vs reference loop: MNIST MLP, {args.epochs} epochs, batch 32", torch.get_num_threads())
    engine = harness.Side("engine (training loop)")
    whole = harness.Side("engine (whole train() call)")
    reference = harness.Side("reference loop")
    accuracies: dict[str, list[float]] = {"engine": [], "reference": []}

    def report() -> None:
        print(harness.table(engine, reference))
        print(harness.table(whole, reference))
        for name, values in accuracies.items():
            if values:
                print(f"   test accuracy {name}: {', '.join(f'{v:.4f}' for v in values)}")
        print(f"   {harness.load()} (after)", flush=True)

    with harness.Watchdog(args.timeout) as watchdog, tempfile.TemporaryDirectory() as tmp:
        watchdog.report = report
        harness.import_mnist(Path(tmp), args.mnist)
        data = registry.load_dataset("mnist", tmp, val_split=0.0, seed=args.seed)
        tensors = harness.mnist_tensors(data)
        print(f"   torch {torch.__version__}, {len(data.y_train)} training samples", flush=True)
        run_index = [0]

        def run_engine() -> float:
            run_index[0] += 1
            accuracy, loop_time, whole_time = harness.engine_train(data, args.epochs, Path(tmp) / f"run-{run_index[0]}",
                                                                   seed=args.seed)
            whole.times.append(whole_time)
            accuracies["engine"].append(accuracy)
            return loop_time

        def run_reference() -> float:
            accuracy, seconds, kind = harness.reference_loop(tensors, args.epochs, seed=args.seed)
            if not reference.notes:
                reference.notes.append(kind)
                print(f"   reference optimizer: Adam ({kind})", flush=True)
            accuracies["reference"].append(accuracy)
            return seconds

        harness.interleave(args.pairs, engine, run_engine, reference, run_reference)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
