"""SSE fan-out: N clients on one run; latency from a row's commit to each client receiving it.

    .venv/bin/python bench/sse_fanout.py [--clients 1 100 500] [--events 40] [--interval 0.1]

Starts `trainboard serve` on a temporary database, writes metric rows for one run from this
process (as a trainer would), and measures for each N: p50/p95 latency and the server's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


def _start_server(data_dir: Path, port: int) -> subprocess.Popen:
    # The bench writes the run's rows itself, without heartbeats: keep the reaper away from it.
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), "TRAINBOARD_WARM_WORKERS": "false",
           "TRAINBOARD_HEARTBEAT_TIMEOUT_S": "86400"}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level",
                                "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _make_run() -> int:
    from app.core.db import session_scope
    from app.core.models_base import utcnow
    from app.runs.events import append_events
    from app.runs.models import Run

    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status="running", worker="bench",
                  heartbeat_at=utcnow())
        db_session.add(run)
        db_session.flush()
        append_events(db_session, run.id, [("status", {"status": "running"})])
        return run.id


def _commit_event(run_id: int, index: int) -> tuple[int, float]:
    from app.core.db import session_scope
    from app.runs.events import append_events

    with session_scope() as db_session:
        seq = append_events(db_session, run_id, [("step", {"epoch": 1, "step": index, "loss": 0.5})])
    return seq, time.time()


async def _client(url: str, received: dict[int, list[float]], connected: list[int], stop_at: int) -> None:
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url) as response:
        connected[0] += 1
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
                received.setdefault(seq, []).append(time.time())
                if seq >= stop_at:
                    return


async def _measure(base: str, run_id: int, clients: int, events: int, interval: float, server: psutil.Process):
    start_seq = _commit_event(run_id, 0)[0]
    stop_at = start_seq + events
    url = f"{base}/api/runs/{run_id}/events?after={start_seq}"
    received: dict[int, list[float]] = {}
    connected = [0]
    tasks = [asyncio.create_task(_client(url, received, connected, stop_at)) for _ in range(clients)]
    while connected[0] < clients:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    cpu_before = sum(server.cpu_times()[:2])
    committed: dict[int, float] = {}
    for index in range(events):
        seq, at = await asyncio.to_thread(_commit_event, run_id, index + 1)
        committed[seq] = at
        await asyncio.sleep(interval)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    except TimeoutError:
        behind = sum(1 for times in received.values() for _ in times)
        raise SystemExit(f"clients did not receive every event within 60 s ({behind} deliveries)") from None
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    latencies = sorted(t - committed[seq] for seq, times in received.items() if seq in committed for t in times)
    missing = clients * events - len(latencies)
    return latencies, cpu, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    _raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        os.environ["TRAINBOARD_DATA_DIR"] = str(data_dir)
        from app.core.db import upgrade_database

        data_dir.mkdir()
        upgrade_database()
        from tests.conftest import free_port

        port = free_port()
        process = _start_server(data_dir, port)
        try:
            server = psutil.Process(process.pid)
            run_id = _make_run()
            print(f"{'clients':>8} {'events':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'server cpu s':>13} {'missed':>7}")
            for clients in args.clients:
                latencies, cpu, missing = asyncio.run(
                    _measure(f"http://127.0.0.1:{port}", run_id, clients, args.events, args.interval, server))
                p50 = latencies[len(latencies) // 2] * 1000
                p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
                print(f"{clients:>8} {args.events:>7} {p50:>8.1f} {p95:>8.1f} {latencies[-1] * 1000:>8.1f} "
                      f"{cpu:>13.2f} {missing:>7}")
        finally:
            process.terminate()
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
