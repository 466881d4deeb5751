"""How much the seed's MNIST recipe varies with the seed: engine vs the reference loop (bench/harness.py), N seeds each.

The tutorial's MLP (Adam 1e-3, batch 32, 5 epochs) lands around 0.974 test accuracy, with a
seed-to-seed spread of about ±0.003 for both the engine and a plain PyTorch loop. This prints
each run and the mean, min and max of both, so a single-run threshold can be judged fairly.

    python bench/mnist_seed_spread.py [--mnist DIR] [--seeds 5] [--threads 1] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--val-split", type=float, default=0.0, help="held out from both loops (the tutorial: 0)")
    parser.add_argument("--timeout", type=float, default=3600, help="overall time limit in seconds (exit 124)")
    args = parser.parse_args()
    with harness.Watchdog(args.timeout):
        return spread(args)


def spread(args) -> int:

    import torch

    from app.datasets import registry

    torch.set_num_threads(args.threads)
    engine, reference = [], []
    with tempfile.TemporaryDirectory() as tmp:
        registry.import_idx("mnist", args.mnist, tmp)
        for seed in range(args.seeds):
            data = registry.load_dataset("mnist", tmp, seed=seed, val_split=args.val_split)
            reference.append(harness.reference_loop(harness.mnist_tensors(data), 5, seed=seed)[0])
            engine.append(harness.engine_train(data, 5, Path(tmp) / f"run-{seed}", seed=seed,
                                               val_split=args.val_split)[0])
            print(f"seed {seed}: engine {engine[-1]:.4f}  reference {reference[-1]:.4f}", flush=True)
    for name, accs in (("engine", engine), ("reference", reference)):
        print(f"{name:9}: mean {statistics.mean(accs):.4f}  min {min(accs):.4f}  max {max(accs):.4f}  "
              f">= 0.974: {sum(a >= 0.974 for a in accs)}/{len(accs)}")
    print(f"mean engine - mean reference: {statistics.mean(engine) - statistics.mean(reference):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
