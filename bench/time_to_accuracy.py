"""Time to the tutorial's 0.974: the tutorial recipe against the fast recipe on real MNIST, interleaved.

Both recipes are app/architectures/recipes.py's (the settings the launch form fills in), trained by the
engine (`app.engine.loop.train`, as a trainer does) on the seed MLP (preset mnist-mlp) with the real MNIST
files (../shared/data/mnist), all 60,000 training images (val_split 0, as the tutorial). After each epoch
the bench evaluates the model on the 10,000 test images; that evaluation is the bench's, so its time is
left out. The time to the target is from the `train()` call to the end of the first epoch whose test
accuracy is >= 0.974 (data to tensors, the warm-up step, the epochs and their checkpoints included).
Runs go tutorial, fast, tutorial, fast ... once per seed; a run stops at the epoch that reaches the target
(--full: trains every epoch); per recipe it reports each seed's time and the median (a seed that never
reaches the target counts as infinitely slow). One untimed warm-up run goes first (lazy imports). `--write` stores the result in
app/architectures/recipe_figures.json, which the launch form shows.

    .venv/bin/python bench/time_to_accuracy.py [--threads 2] [--seeds 0 1 2] [--timeout 360] [--write]
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def main() -> int:
    p = harness.parser(__doc__, timeout=360, pairs=False)
    p.set_defaults(threads=2)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipes", nargs="+", default=["tutorial", "fast"])
    p.add_argument("--write", action="store_true", help="store the figures for the launch form")
    p.add_argument("--full", action="store_true",
                   help="train every epoch of each recipe (default: stop a run once it has reached the target)")
    p.add_argument("--fast-lr", type=float, help="try another fast-recipe learning rate (not with --write)")
    p.add_argument("--fast-epochs", type=int, help="try another number of fast-recipe epochs (not with --write)")
    p.add_argument("--fast-warmup", type=int, help="try another warm-up length (not with --write)")
    p.add_argument("--fast-batch", type=int, help="try another fast-recipe batch size (not with --write)")
    p.add_argument("--fast-schedule", help="try another fast-recipe schedule name (not with --write)")
    args = p.parse_args()
    tuned = any(v is not None for v in (args.fast_lr, args.fast_epochs, args.fast_warmup, args.fast_batch, args.fast_schedule))
    if tuned and args.write:
        p.error("--write stores the recipes as the form offers them: leave out the --fast-* overrides")

    import torch

    from app.architectures import presets, recipes
    from app.datasets import registry
    from app.engine.build import build_model
    from app.engine.loop import train
    from app.engine.types import StoppedError, TrainConfig, TrainJob

    torch.set_num_threads(args.threads)
    harness.header("time to 0.974 test accuracy on MNIST: tutorial recipe vs fast recipe (seed MLP, engine)",
                   torch.get_num_threads())
    load_before = harness.load()
    configs = {name: json.loads(json.dumps(recipes.RECIPES[name].config)) for name in args.recipes}
    if "fast" in configs:
        fast = configs["fast"]
        fast["optimizer"]["lr"] = args.fast_lr or fast["optimizer"]["lr"]
        fast["epochs"] = args.fast_epochs or fast["epochs"]
        fast["batch_size"] = args.fast_batch or fast["batch_size"]
        if args.fast_schedule:
            fast["schedule"]["name"] = args.fast_schedule
        if args.fast_warmup is not None:
            fast["schedule"]["warmup_steps"] = args.fast_warmup
    for name, config in configs.items():
        print(f"   {name}: {json.dumps(config)}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in configs}
    target = recipes.TARGET_ACCURACY

    def report() -> dict:
        summary = {}
        for name, rows in results.items():
            if not rows:
                continue
            times = [r["seconds_to_target"] for r in rows]
            reached = [t for t in times if t is not None]
            median = statistics.median([math.inf if t is None else t for t in times])
            summary[name] = {
                "seconds_to_target": None if math.isinf(median) else round(median, 2),
                "min_seconds_to_target": round(min(reached), 2) if reached else None,
                "reached": len(reached), "seeds": len(rows),
                "final_accuracy": round(statistics.median(r["final_accuracy"] for r in rows), 4),
                "total_seconds": round(statistics.median(r["total_seconds"] for r in rows), 2),
                "stopped_at_target": not args.full,
                "epochs_to_target": [r["epochs_to_target"] for r in rows]}
            per_seed = ", ".join(f"seed {r['seed']}: " + ("not reached" if r["seconds_to_target"] is None else
                                 f"{r['seconds_to_target']:.2f} s (epoch {r['epochs_to_target']})") for r in rows)
            print(f"   {name:<9} median time to {target}: "
                  f"{'not reached' if math.isinf(median) else f'{median:.2f} s'}; reached in {len(reached)}/"
                  f"{len(rows)} seeds; test accuracy at its last epoch (median) {summary[name]['final_accuracy']:.4f}; "
                  f"epochs trained (median) {summary[name]['total_seconds']:.2f} s  [{per_seed}]", flush=True)
        print(f"   {harness.load()} (after)", flush=True)
        return summary

    with harness.Watchdog(args.timeout) as watchdog, tempfile.TemporaryDirectory(prefix="tta-") as tmp:
        watchdog.report = report
        data_dir = Path(tmp) / "data"
        harness.import_mnist(data_dir, args.mnist)
        data = registry.load_dataset("mnist", data_dir, val_split=0.0)
        x_test = torch.from_numpy(data.x_test).float().div_(255)  # as the engine scales images ("auto")
        y_test = torch.from_numpy(data.y_test).long()
        spec = presets.get_preset("mnist-mlp").spec

        def run(name: str, seed: int) -> dict:
            config = TrainConfig.from_dict({**configs[name], "seed": seed, "device": "cpu", "histograms": "off"})
            workdir = Path(tmp) / f"{name}-{seed}"
            job = TrainJob(spec=spec, config=config, checkpoint_dir=workdir / "ckpt", artifacts_dir=workdir / "export")
            model = build_model(spec, data.input_shape)
            state = {"excluded": 0.0, "hit": None, "epoch_hit": None, "last": 0.0, "accuracy": 0.0}

            class Sink:
                def emit(self, kind: str, payload: dict) -> None:
                    if kind != "epoch":
                        return
                    now = time.perf_counter()
                    model.eval()
                    with torch.no_grad():
                        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
                    model.train()
                    elapsed = now - start - state["excluded"]
                    state["excluded"] += time.perf_counter() - now
                    state["last"], state["accuracy"] = elapsed, accuracy
                    if state["hit"] is None and accuracy >= target:
                        state["hit"], state["epoch_hit"] = elapsed, payload["epoch"]
                    print(f"      {name} seed {seed} epoch {payload['epoch']}: test accuracy {accuracy:.4f} "
                          f"at {elapsed:.2f} s", flush=True)

            start = time.perf_counter()
            try:
                train(job, data, Sink(), (lambda: state["hit"] is not None) if not args.full else None, model=model)
            except StoppedError:
                pass  # it reached the target: the rest of its epochs would not change its time to it
            row = {"seed": seed, "seconds_to_target": state["hit"], "epochs_to_target": state["epoch_hit"],
                   "final_accuracy": state["accuracy"], "total_seconds": state["last"]}
            results[name].append(row)
            return row

        # Untimed: the lazy imports and first calls a trainer process pays once (its warm standby does).
        warm = TrainConfig.from_dict({**configs[next(iter(configs))], "epochs": 1, "max_train_samples": 2048,
                                      "device": "cpu", "histograms": "off"})
        train(TrainJob(spec=spec, config=warm, checkpoint_dir=Path(tmp) / "warm" / "ckpt",
                       artifacts_dir=Path(tmp) / "warm" / "export"), data, _Quiet())
        for seed in args.seeds:  # interleaved: tutorial, fast, tutorial, fast ...
            for name in configs:
                run(name, seed)
        summary = report()

    if args.write:
        stored = {"measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "machine": harness.machine(), "machine_short": f"{_cores()}-core CPU",
                  "threads": torch.get_num_threads(), "load_before": load_before, "load_after": harness.load(),
                  "torch": torch.__version__, "target": target, "seeds": args.seeds,
                  "bench": "bench/time_to_accuracy.py", "recipes": summary}
        recipes.FIGURES_PATH.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"   stored in {recipes.FIGURES_PATH.relative_to(harness.ROOT)}", flush=True)
    return 0


class _Quiet:
    def emit(self, kind: str, payload: dict) -> None:
        pass


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
