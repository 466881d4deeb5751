"""GPU smoke test: the MNIST-sized MLP and the CIFAR-10 CNN on CUDA with mixed precision and channels-last.

Synthetic data of the right shapes (no downloads), 2 epochs each; prints samples/s per epoch.
Without a CUDA device it says so and exits 0.

    python bench/gpu_smoke.py [--samples 20000] [--batch-size 256] [--timeout 600]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.engine.loop import train  # noqa: E402
from app.engine.types import DatasetArrays, ListSink, TrainConfig, TrainJob  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}
CNN = {"layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"},
    {"type": "Dense", "units": 64, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}


def synthetic(shape: tuple[int, ...], n: int) -> DatasetArrays:
    """uint8 images whose class shifts the mean brightness: learnable, no download."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n + n // 5).astype(np.int64)
    x = (rng.integers(0, 100, (len(y), *shape)) + (y * 15)[:, None, None, None]).astype(np.uint8)
    k = n // 10
    return DatasetArrays("synthetic", x[k:n], y[k:n], x[:k], y[:k], x[n:], y[n:], [str(i) for i in range(10)],
                         list(shape), [0.5] * shape[0], [0.25] * shape[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="overall time limit in seconds (exit 124)")
    args = parser.parse_args()
    with harness.Watchdog(args.timeout):
        return measure(args)


def measure(args) -> int:
    if not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} sees none (CUDA build: {torch.version.cuda}); "
              "nothing to measure here")
        return 0
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16: {torch.cuda.is_bf16_supported()}")
    for name, spec, shape in (("mlp", MLP, (1, 28, 28)), ("cifar10_cnn", CNN, (3, 32, 32))):
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device="cuda",
                                 mixed_precision=True, channels_last=True)
            job = TrainJob(spec=spec, config=config, checkpoint_dir=Path(tmp) / "ckpt",
                           artifacts_dir=Path(tmp) / "export")
            sink = ListSink()
            result = train(job, synthetic(shape, args.samples), sink)
            log = sink.of("log")[0]["message"]
            rates = ", ".join(f"{e['samples_per_sec']:,.0f}" for e in sink.of("epoch"))
            print(f"{name:12} {log}; samples/s per epoch: {rates}; test accuracy {result.test_accuracy:.3f}; "
                  f"peak {result.peak_memory_bytes / 2**20:.0f} MiB; artifacts: "
                  f"{', '.join(a['name'] for a in sink.of('artifact'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
