"""The tutorial's MNIST MLP through the whole product, POST /api/runs → completed, against the fair
reference loop, interleaved.

Starts `trainboard serve` (one slot, `TRAINBOARD_TRAINER_THREADS` = --threads) on a temporary data
dir with the real MNIST files imported, and runs A B A B ...: A posts the MLP (5 epochs, batch 32,
Adam 1e-3, `val_split` 0 as the tutorial's `model.fit(x_train, y_train, epochs=5)`) with a warm
trainer standing by and waits for `completed` (timed from the POST to the run's `finished_at`, the
moment the status was stored); B runs bench/harness.py's reference loop in this process with the
same thread count. Before each side the bench waits until the server's next
standby trainer has warmed up, so neither side shares the CPU with that warm-up.

    .venv/bin/python bench/api_seed_mnist.py [--epochs 5] [--pairs 3] [--threads 1] [--timeout 900]
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def main() -> int:
    p = harness.parser(__doc__, timeout=900)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()

    import httpx
    import torch

    from app.datasets import registry

    torch.set_num_threads(args.threads)
    harness.header(f"POST /api/runs → completed vs reference loop: MNIST MLP, {args.epochs} epochs, batch 32",
                   torch.get_num_threads())
    api = harness.Side("API POST → completed")
    engine = harness.Side("  of which epochs (epoch_time sum)")
    first = harness.Side("  POST → first metric row")
    # What the run costs around its training loop: on a loaded machine the loop's own time swings by more
    # than the whole difference, this figure much less (issue 18, item 2).
    outside = harness.Side("  POST → completed minus the loop")
    reference = harness.Side("reference loop")
    accuracies: dict[str, list[float]] = {"API": [], "reference": []}

    def report() -> None:
        print(harness.table(api, reference))
        if engine.times:
            print(f"   engine training time inside the API runs: {harness.summary(engine.times)}")
        if first.times:
            print(f"   POST → first metric row: {harness.summary(first.times)}")
        if outside.times:
            print(f"   POST → completed minus the training loop: {harness.summary(outside.times)}")
        for name, values in accuracies.items():
            if values:
                print(f"   test accuracy {name}: {', '.join(f'{v:.4f}' for v in values)}")
        print(f"   {harness.load()} (after)", flush=True)

    with harness.Watchdog(args.timeout) as watchdog:
        watchdog.report = report
        env = {"TRAINBOARD_SLOTS": "1", "TRAINBOARD_TRAINER_THREADS": str(args.threads)}
        with harness.Server(env=env, watchdog=watchdog) as server:
            harness.import_mnist(server.data_dir, args.mnist)
            tensors = harness.mnist_tensors(registry.load_dataset("mnist", server.data_dir, val_split=0.0))
            server.start()
            posted_runs = [0]
            body = {"preset": "mnist-mlp", "dataset": "mnist",
                    "config": {"epochs": args.epochs, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001},
                               "seed": 0, "val_split": 0.0}}
            client = httpx.Client(base_url=server.url, timeout=30)

            def run_api() -> float:
                server.wait_standby(posted_runs[0] + 1)
                posted, posted_at = time.perf_counter(), time.time()
                run = client.post("/api/runs", json=body)
                run.raise_for_status()
                run_id = run.json()["id"]
                posted_runs[0] += 1
                seen, first_at = 0, None
                while first_at is None:  # a tight poll, as a watching browser would see it
                    rows = client.get(f"/api/runs/{run_id}/metrics", params={"after": seen}).json()
                    seen = rows[-1]["seq"] if rows else seen
                    if any(r["kind"] in ("step", "epoch") for r in rows):
                        first_at = time.perf_counter() - posted
                    elif any(r["kind"] == "status" and r["payload"]["status"] in ("failed", "cancelled")
                             for r in rows):
                        raise SystemExit(f"run {run_id} did not train: {rows[-1]['payload']}")
                    else:
                        time.sleep(0.01)
                while True:
                    state = client.get(f"/api/runs/{run_id}").json()
                    if state["status"] in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.05)
                # Until the run's `finished_at` (when `completed` was stored; the same clock as this
                # process's), not until this poll saw it: the 50 ms poll's granularity is not the run's.
                elapsed = datetime.fromisoformat(state["finished_at"]).timestamp() - posted_at
                if state["status"] != "completed":
                    raise SystemExit(f"run {run_id} {state['status']}: {state['failure_reason']}")
                epochs = [r for r in client.get(f"/api/runs/{run_id}/metrics").json() if r["kind"] == "epoch"]
                engine.times.append(sum(r["payload"]["epoch_time"] for r in epochs))
                outside.times.append(elapsed - engine.times[-1])
                first.times.append(first_at)
                accuracies["API"].append(state["test_accuracy"])
                return elapsed

            def run_reference() -> float:
                server.wait_standby(posted_runs[0] + 1)  # the next trainer's warm-up is over
                accuracy, seconds, kind = harness.reference_loop(tensors, args.epochs)
                if not reference.notes:
                    reference.notes.append(kind)
                    print(f"   reference optimizer: Adam ({kind})", flush=True)
                accuracies["reference"].append(accuracy)
                return seconds

            try:
                harness.interleave(args.pairs, api, run_api, reference, run_reference)
            finally:
                client.close()
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
