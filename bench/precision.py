"""A small CNN on real Fashion-MNIST: precision fp32 against auto (bf16 autocast + channels-last on a CPU with
bf16 hardware), through the engine's own loop, same seed and epochs on both sides.

Model: Conv 32 3x3 relu, 2x2 max pooling, Conv 64 3x3 relu, 2x2 max pooling, Flatten, Dense 128 relu,
Dense 10 softmax; Adam 1e-3, batch 128. Data: ../shared/data/fashion-mnist imported into a temporary data
dir (validation split 0.02), `--samples` training samples (a seeded subsample, to keep the whole bench
within ~6 minutes on two shared, busy cores), the full 10,000-image test set for accuracy. Histogram
recording is off on both sides (it is measured by bench/insight_overhead.py).

For each seed: one fp32 run, then one auto run (A B A B ..., one process, the same torch thread count).
Samples/s is the engine's per-epoch training speed (the `epoch` event: training samples / loop time, no
evaluation); every epoch of every run is one sample, and the table shows min and median per side.
Accuracy is each run's test accuracy; the difference is auto − fp32 at the same seed.

On a shared, busy machine wall-clock speed mostly measures the other jobs, so the bench also reports
training samples per CPU-second of this process (all its threads): per epoch, the process CPU time from
the start of the epoch's loop (the `precision` event, then the previous `epoch` event) to its `epoch`
event, which includes that epoch's validation pass over the 1,200 validation images.

    .venv/bin/python bench/precision.py [--seeds 3] [--epochs 2] [--samples 5000] [--threads 2] [--timeout 600]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

CNN = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}
SIDES = ("fp32", "auto")


class TimedSink:
    """A ListSink that notes this process's CPU time at each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict, float]] = []

    def emit(self, kind: str, payload: dict) -> None:
        self.events.append((kind, payload, time.process_time()))

    def cpu_rates(self) -> list[float]:
        """Training samples per CPU-second, per epoch (see the module's doc)."""
        marks = [(k, p, t) for k, p, t in self.events if k in ("precision", "epoch")]
        samples = {p["epoch"]: p["samples_per_sec"] * p["epoch_time"] for k, p, _ in marks if k == "epoch"}
        return [samples[b[1]["epoch"]] / (b[2] - a[2]) for a, b in zip(marks, marks[1:], strict=False)
                if b[0] == "epoch" and b[2] > a[2]]


def main() -> int:
    p = harness.parser(__doc__, timeout=600, pairs=False)
    p.set_defaults(threads=2)
    p.add_argument("--fashion", type=Path, default=harness.SHARED_DATA / "fashion-mnist")
    p.add_argument("--seeds", type=int, default=3, help="seeds, one fp32 and one auto run each (default 3)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--samples", type=int, default=5000, help="training samples (of the 58,800 after the split)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--val-split", type=float, default=0.02,
                   help="validation split (default 0.02: 1,200 images, evaluated each epoch on both sides)")
    args = p.parse_args()

    import torch

    from app.datasets import registry
    from app.engine.loop import train
    from app.engine.runtime import cpu_bf16_hardware
    from app.engine.types import TrainConfig, TrainJob

    torch.set_num_threads(args.threads)
    harness.header(f"precision fp32 vs auto: small CNN on Fashion-MNIST, {args.samples} training samples, "
                   f"{args.epochs} epochs, batch {args.batch_size}, {args.seeds} seeds", torch.get_num_threads())
    print(f"   bf16 hardware detected: {cpu_bf16_hardware() or 'none'}", flush=True)
    speed = {side: harness.Side(side) for side in SIDES}
    cpu = {side: harness.Side(side) for side in SIDES}
    accuracy: dict[str, dict[int, float]] = {side: {} for side in SIDES}
    chosen: dict[str, str] = {}

    def report() -> None:
        for sides, what in ((speed, "training samples/s, wall clock, per epoch"),
                            (cpu, "training samples per CPU-second, per epoch")):
            print(harness.table(sides["fp32"], sides["auto"], what=what), flush=True)
            if sides["fp32"].times and sides["auto"].times:
                print(f"   speed-up (median auto / median fp32): "
                      f"{statistics.median(sides['auto'].times) / statistics.median(sides['fp32'].times):.2f}x; "
                      f"(max auto / max fp32): {max(sides['auto'].times) / max(sides['fp32'].times):.2f}x", flush=True)
        seeds = sorted(set(accuracy["fp32"]) & set(accuracy["auto"]))
        for seed in seeds:
            a, b = accuracy["fp32"][seed], accuracy["auto"][seed]
            print(f"   seed {seed}: test accuracy fp32 {a:.2%}, auto {b:.2%}, auto - fp32 {100 * (b - a):+.2f} points")
        if seeds:
            diffs = [100 * (accuracy["auto"][s] - accuracy["fp32"][s]) for s in seeds]
            mean = {side: statistics.mean(accuracy[side][s] for s in seeds) for side in SIDES}
            print(f"   mean test accuracy fp32 {mean['fp32']:.2%}, auto {mean['auto']:.2%} "
                  f"({100 * (mean['auto'] - mean['fp32']):+.2f} points; per seed {min(diffs):+.2f} to {max(diffs):+.2f})")
        for side, why in chosen.items():
            print(f"   {side}: {why}")
        print(f"   {harness.load()} (after)", flush=True)

    with harness.Watchdog(args.timeout) as watchdog, tempfile.TemporaryDirectory() as tmp:
        watchdog.report = report
        data_dir = Path(tmp) / "data"
        registry.import_idx("fashion_mnist", args.fashion, data_dir)
        data = registry.load_dataset("fashion_mnist", data_dir, val_split=args.val_split)
        for seed in range(args.seeds):
            for side in SIDES:
                config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed, device="cpu",
                                     precision=side, max_train_samples=args.samples, histograms="off")
                run_dir = Path(tmp) / f"{side}-{seed}"
                job = TrainJob(spec=CNN, config=config, checkpoint_dir=run_dir / "ckpt", artifacts_dir=run_dir / "export")
                sink = TimedSink()
                result = train(job, data, sink)
                per_epoch = [p["samples_per_sec"] for k, p, _ in sink.events if k == "epoch"]
                per_cpu = sink.cpu_rates()
                speed[side].times.extend(per_epoch)
                cpu[side].times.extend(per_cpu)
                accuracy[side][seed] = float(result.test_accuracy)
                chosen[side] = f"{result.extra['precision']} ({result.extra['precision_reason']})"
                print(f"   seed {seed} {side:<5} {result.extra['precision']}: samples/s per epoch "
                      f"{', '.join(f'{v:,.0f}' for v in per_epoch)} (per CPU-second {', '.join(f'{v:,.0f}' for v in per_cpu)}); test accuracy {result.test_accuracy:.2%}; "
                      f"{harness.load()}", flush=True)
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
