"""What per-layer histograms cost (app/engine/histograms.py): training with `histograms` on against off.

Models: the seed MLP (preset mnist-mlp: Flatten, Dense 128 relu, Dense 10 softmax; Adam 1e-3, batch 32)
and a small CNN (Conv 16 and Conv 32, 3x3 same relu, each with 2x2 max pooling, Dense 64 relu, Dense 10;
batch 64), on the first `--samples` / `--cnn-samples` real MNIST training images (validation split 0.1:
the activations' fixed batch is 256 of those). Each pair trains the same model and seed with recording
off, then on (A B A B ..., same process, same torch thread count, printed).

Per epoch, "cost" is the training loop's time (the `epoch` event's `epoch_time`, which holds the per-step
gradient-norm sampling) plus the recording at the epoch's end (the `histograms` event's `seconds`: the
histograms, the activations' forward pass on the fixed batch, the warnings). Every epoch of every run
is one sample; the table shows min and median per side and the ratio of medians (on / off). On a busy
machine that ratio is noisier than the cost itself, so the recording's own time is measured too: the
time spent in the per-step hook (timed around each call) plus the end-of-epoch recording, as a share of
the same epoch's training time without them.

    .venv/bin/python bench/insight_overhead.py [--epochs 3] [--pairs 3] [--threads 1] [--timeout 600]
        [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

SMALL_CNN = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


def main() -> int:
    p = harness.parser(__doc__, timeout=600)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=8000, help="MLP training samples (of the 54,000 left after the validation split)")
    p.add_argument("--cnn-samples", type=int, default=3000, help="CNN training samples")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from app.architectures.presets import get_preset
    from app.datasets import registry
    from app.engine import histograms as insight
    from app.engine.loop import train
    from app.engine.types import ListSink, TrainConfig, TrainJob

    torch.set_num_threads(args.threads)
    harness.header(f"histograms on vs off: MNIST MLP and a small CNN, {args.epochs} epochs a run, device {args.device}",
                   torch.get_num_threads())
    models = {"mnist-mlp": (get_preset("mnist-mlp").spec, 32, args.samples),
              "small CNN": (SMALL_CNN, 64, args.cnn_samples)}
    sides = {(name, mode): harness.Side(f"{name}, histograms {mode}") for name in models for mode in ("on", "off")}
    recording: dict[str, list[float]] = {name: [] for name in models}
    shares: dict[str, list[float]] = {name: [] for name in models}
    hook_seconds: list[float] = []  # per epoch of the run under way: time inside Insight.after_backward
    real_start, real_hook = insight.Insight.start_epoch, insight.Insight.after_backward

    def start_epoch(self, steps):
        hook_seconds.append(0.0)
        real_start(self, steps)

    def after_backward(self):
        began = time.perf_counter()
        real_hook(self)
        hook_seconds[-1] += time.perf_counter() - began

    insight.Insight.start_epoch, insight.Insight.after_backward = start_epoch, after_backward
    steps: dict[str, int] = {}

    def report() -> None:
        for name in models:
            print(harness.table(sides[name, "on"], sides[name, "off"], what="seconds per epoch"))
            if recording[name]:
                print(f"   {name}: end-of-epoch recording alone: {harness.summary(recording[name])}"
                      f"; {steps.get(name, '?')} steps an epoch")
                print(f"   {name}: recording's own time (per-step hook + end of epoch) / the epoch's training time "
                      f"without it: median {100 * statistics.median(shares[name]):.2f}%, "
                      f"max {100 * max(shares[name]):.2f}%")
        print(f"   {harness.load()} (after)", flush=True)

    with harness.Watchdog(args.timeout) as watchdog, tempfile.TemporaryDirectory() as tmp:
        watchdog.report = report
        harness.import_mnist(Path(tmp), args.mnist)
        data = registry.load_dataset("mnist", tmp, val_split=0.1, seed=0)
        print(f"   torch {torch.__version__}, {harness.machine()}", flush=True)
        count = [0]

        def measure(name: str, mode: str) -> float:
            spec, batch, samples = models[name]
            count[0] += 1
            work = Path(tmp) / f"run-{count[0]}"
            config = TrainConfig(epochs=args.epochs, batch_size=batch, seed=0, device=args.device, val_split=0.1,
                                 max_train_samples=samples, histograms=mode)
            sink = ListSink()
            hook_seconds.clear()
            train(TrainJob(spec=spec, config=config, checkpoint_dir=work / "ckpt", artifacts_dir=work / "export"),
                  data, sink)
            extra = {e["epoch"]: e["seconds"] for e in sink.of("histograms")}
            if mode == "on" and len(extra) != args.epochs:
                raise SystemExit(f"{name}: expected {args.epochs} histograms events, got {len(extra)}")
            costs = [e["epoch_time"] + extra.get(e["epoch"], 0.0) for e in sink.of("epoch")]
            if mode == "on":
                recording[name].extend(extra.values())
                for e, hook in zip(sink.of("epoch"), hook_seconds, strict=True):
                    own = hook + extra[e["epoch"]]
                    shares[name].append(own / (e["epoch_time"] - hook))
            steps[name] = sink.of("epoch")[0]["step"]
            side = sides[name, mode]
            side.times.extend(costs)
            print(f"   {side.name:<36} epochs {', '.join(f'{c:.3f}' for c in costs)} s", flush=True)
            return statistics.median(costs)

        for index in range(args.pairs):
            print(f"   pair {index + 1}/{args.pairs}", flush=True)
            for name in models:
                for mode in ("off", "on"):
                    measure(name, mode)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
