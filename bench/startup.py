"""Start-up figures: POST /api/runs → first metric row with a warm standby trainer and from cold,
interleaved; and server cold start (process spawn → first 200 from /healthz).

Two servers run side by side on temporary data dirs with the real MNIST files imported, one slot
and `TRAINBOARD_TRAINER_THREADS` = --threads each: "warm" keeps a standby trainer (the default),
"cold" has none (`TRAINBOARD_WARM_WORKERS=0`), so each run spawns `python -m app.worker` and pays
the torch import. Each pair posts the MNIST MLP to the warm server, then to the cold one; a run is
cancelled as soon as its first metric row is read, and the next side waits until the warm server's
next standby has warmed up, so no measurement shares the CPU with a warm-up.

Beside the cold side, the floor any PyTorch program pays before its first step is timed the same way:
a bare `python -c` that imports torch, builds an `nn.Linear`, takes one fused-Adam step (the first
optimizer step imports torch._dynamo) and exits ("bare torch"), once per pair, right after the cold run.

Then `trainboard serve` is started --pairs times on a fresh data dir each (migrations included, the
MNIST files imported beforehand, the same settings as the warm server): the time from spawning the
process to the first 200 from /healthz is taken, and the MNIST MLP is posted at that moment ("fresh
server": its first standby trainer is still warming up, started as the server process started);
then the server is stopped and started again on the same data dir (a restart: no migration to run).

    .venv/bin/python bench/startup.py [--pairs 3] [--threads 1] [--timeout 600]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled")


def first_metric(client, body: dict) -> float:
    """Seconds from POST to the first step/epoch row (polled every 10 ms); the run is then cancelled."""
    run_id, _, elapsed = harness.post_until_first_metric(client, body)
    client.post(f"/api/runs/{run_id}/cancel")
    deadline = time.monotonic() + 60
    while client.get(f"/api/runs/{run_id}").json()["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not stop after cancel")
        time.sleep(0.05)
    return elapsed


BARE_TORCH = ("import torch, torch.nn.functional as F; torch.set_num_threads(1); m = torch.nn.Linear(784, 10);"
              "o = torch.optim.Adam(m.parameters(), fused=True);"
              "F.cross_entropy(m(torch.rand(32, 784)), torch.zeros(32, dtype=torch.long)).backward(); o.step()")


def bare_torch() -> float:
    """Seconds from spawning `python -c BARE_TORCH` to its exit: imports, one training step."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE_TORCH], check=True)
    return time.perf_counter() - started


def main() -> int:
    p = harness.parser(__doc__, timeout=600)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    args = p.parse_args()

    import httpx

    harness.header("start-up: POST → first metric row (warm standby vs cold), server spawn → /healthz",
                   args.threads)
    warm_side = harness.Side("warm: POST → first metric")
    cold_side = harness.Side("cold: POST → first metric")
    boot = harness.Side("server spawn → /healthz 200")
    fresh = harness.Side("fresh server: POST at its first /healthz → first metric")
    restart = harness.Side("server restart (same data dir) → /healthz 200")
    bare = harness.Side("bare torch: spawn → first step done")

    def report() -> None:
        print(harness.table(cold_side, warm_side))
        if bare.times:
            print(f"   bare torch (spawn → one Adam step, exit), after each cold run: {harness.summary(bare.times)}")
        if boot.times:
            print(f"   server cold start: {harness.summary(boot.times)}")
        if fresh.times:
            print(f"   {fresh.name}: {harness.summary(fresh.times)}")
        if restart.times:
            print(f"   {restart.name}: {harness.summary(restart.times)}")
        print(f"   {harness.load()} (after)", flush=True)

    body = {"preset": "mnist-mlp", "dataset": "mnist",
            "config": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001}, "seed": 0,
                       "val_split": 0.0}}
    base_env = {"TRAINBOARD_SLOTS": "1", "TRAINBOARD_TRAINER_THREADS": str(args.threads)}
    with harness.Watchdog(args.timeout) as watchdog:
        watchdog.report = report
        with harness.Server(env=base_env, watchdog=watchdog) as warm, \
                harness.Server(env={**base_env, "TRAINBOARD_WARM_WORKERS": "0"}, watchdog=watchdog) as cold:
            for server in (warm, cold):
                harness.import_mnist(server.data_dir, args.mnist)
                server.start()
            posted = [0]
            with httpx.Client(base_url=warm.url, timeout=30) as warm_api, \
                    httpx.Client(base_url=cold.url, timeout=30) as cold_api:

                def run_warm() -> float:
                    warm.wait_standby(posted[0] + 1)
                    posted[0] += 1
                    return first_metric(warm_api, body)

                def run_cold() -> float:
                    warm.wait_standby(posted[0] + 1)  # the warm server's next standby is ready: idle
                    seconds = first_metric(cold_api, body)
                    bare.times.append(bare_torch())
                    print(f"   {bare.name:<44} {bare.times[-1]:8.3f} s", flush=True)
                    return seconds

                harness.interleave(args.pairs, warm_side, run_warm, cold_side, run_cold)
        for index in range(args.pairs):
            with harness.Server(env=base_env, watchdog=watchdog) as server:
                harness.import_mnist(server.data_dir, args.mnist)
                seconds = server.start()
                with httpx.Client(base_url=server.url, timeout=30) as api:
                    fresh.times.append(first_metric(api, body))
                server.stop()
                restart.times.append(server.start())
            boot.times.append(seconds)
            print(f"   start {index + 1}/{args.pairs}: {boot.name:<36} {seconds:8.3f} s, then POST → first metric "
                  f"{fresh.times[-1]:.3f} s; restarted → /healthz {restart.times[-1]:.3f} s", flush=True)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
