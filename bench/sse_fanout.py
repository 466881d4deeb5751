"""SSE fan-out under a writing run: N clients on one run's event stream while another process
appends rows to it at a steady rate.

Starts `trainboard serve` on a temporary SQLite database (no standby trainer, and a heartbeat
timeout long enough that the reaper leaves the bench's run alone) and creates one `running` run.
For each N in --clients: N clients (asyncio + httpx in this process, at most --connect-concurrency
connecting at once, --read-timeout per read) subscribe to `/api/runs/{id}/events` from the row
before the window and count as subscribed once that row arrives; then a writer process appends
--events `step` rows through `app.runs.events.append_events` at --rate rows/s against the same
database and records each row's commit time (wall clock, after COMMIT returns). Every client
records each `(client, seq)` it receives with the receive time.

Reported per N: unique (client, seq) pairs delivered / expected, latency from the row's commit to
the client's receipt (p50 / p95 / max over every delivered pair), the server's CPU seconds during
the window, and the server's RSS (psutil) before the clients connect, with them connected at the
end of the window, and after they have gone. The clients, the writer and the server share this
machine's cores: on a small machine the clients' own parsing is part of the latency.

    .venv/bin/python bench/sse_fanout.py [--clients 500 1000] [--events 50] [--rate 10] [--timeout 600]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

MB = 1 << 20


def writer(run_id: int, events: int, rate: float, out: Path) -> int:
    """Append `events` step rows at `rate` per second; one JSON line (seq, commit time) per row."""
    from app.core.db import session_scope
    from app.runs.events import append_events

    start = time.monotonic()
    with open(out, "w") as sink:
        for index in range(events):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with session_scope() as db_session:
                seq = append_events(db_session, run_id, [("step", {"epoch": 1, "step": index, "loss": 0.5,
                                                                   "accuracy": 0.9, "samples": 32 * index})])
            sink.write(json.dumps([seq, time.time()]) + "\n")
            sink.flush()
    return 0


def make_run() -> tuple[int, int]:
    """A running run with one row; (run id, its last seq)."""
    from app.core.db import session_scope
    from app.core.models_base import utcnow
    from app.runs.events import append_events
    from app.runs.models import Run

    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status="running", worker="bench",
                  heartbeat_at=utcnow())
        db_session.add(run)
        db_session.flush()
        seq = append_events(db_session, run.id, [("status", {"status": "running"})])
        return run.id, seq


def last_seq(run_id: int) -> int:
    from app.core.db import session_scope
    from app.runs.models import Run

    with session_scope(write=False) as db_session:
        return db_session.get(Run, run_id).last_seq


async def subscribe(client, url: str, index: int, received: list[tuple[int, int, float]],
                    subscribed: asyncio.Event, counter: list[int], clients: int, gate: asyncio.Semaphore,
                    first_seq: int, stop_seq: int, errors: list[str]) -> None:
    import httpx

    announced = False
    try:
        async with gate:
            stream = client.stream("GET", url)
            response = await stream.__aenter__()
        try:
            async for line in response.aiter_lines():
                if not line.startswith("id:"):
                    continue
                seq = int(line[3:].strip())
                if seq == first_seq and not announced:
                    announced = True
                    counter[0] += 1
                    if counter[0] == clients:
                        subscribed.set()
                    continue
                received.append((index, seq, time.time()))
                if seq >= stop_seq:
                    return
        finally:
            await stream.__aexit__(None, None, None)
    except (httpx.HTTPError, OSError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        if not announced:
            counter[0] += 1  # gave up: do not make the others wait for it
            if counter[0] == clients:
                subscribed.set()


async def measure(url: str, run_id: int, clients: int, args, server_pid: int, watchdog, tmp: Path) -> dict:
    import httpx
    import psutil

    server = psutil.Process(server_pid)
    rss_before = server.memory_info().rss
    first_seq = last_seq(run_id)
    stop_seq = first_seq + args.events
    received: list[tuple[int, int, float]] = []
    errors: list[str] = []
    subscribed, counter = asyncio.Event(), [0]
    gate = asyncio.Semaphore(args.connect_concurrency)
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(connect=30, read=args.read_timeout, write=10, pool=60)
    stream_url = f"{url}/api/runs/{run_id}/events?after={first_seq - 1}"
    result = {"clients": clients, "expected": clients * args.events}
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(subscribe(client, stream_url, i, received, subscribed, counter, clients, gate,
                                               first_seq, stop_seq, errors)) for i in range(clients)]
        connect_start = time.monotonic()
        try:
            await asyncio.wait_for(subscribed.wait(), args.read_timeout + 60)
        except TimeoutError:
            errors.append(f"only {counter[0]} of {clients} clients subscribed")
        result["subscribe_s"] = time.monotonic() - connect_start
        cpu_before = sum(server.cpu_times()[:2])
        out = tmp / f"writer-{clients}.jsonl"
        writer_process = subprocess.Popen(
            [sys.executable, __file__, "--writer", str(run_id), "--events", str(args.events), "--rate", str(args.rate),
             "--out", str(out)], env=os.environ.copy())
        watchdog.track(writer_process.pid)
        while writer_process.poll() is None:
            await asyncio.sleep(0.05)
        watchdog.untrack(writer_process.pid)
        if writer_process.returncode != 0:
            raise SystemExit(f"the writer failed with exit code {writer_process.returncode}")
        done, pending = await asyncio.wait(tasks, timeout=args.grace)
        result["rss_during"] = server.memory_info().rss
        result["cpu_s"] = sum(server.cpu_times()[:2]) - cpu_before
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)  # let the server notice the disconnects before reading its RSS again
    result["rss_before"], result["rss_after"] = rss_before, server.memory_info().rss
    committed = {seq: at for seq, at in (json.loads(line) for line in out.read_text().splitlines())}
    pairs: dict[tuple[int, int], float] = {}
    for index, seq, at in received:
        if seq in committed:
            pairs.setdefault((index, seq), at - committed[seq])
    latencies = sorted(pairs.values())
    result.update(delivered=len(pairs), duplicates=len(received) - len(pairs), errors=errors,
                  still_open=len(pending), latencies=latencies)
    return result


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, max(0, round(fraction * len(values)) - 1))]


def row(result: dict) -> str:
    lat = result["latencies"]
    p50, p95, worst = ((statistics.median(lat) * 1000, percentile(lat, 0.95) * 1000, lat[-1] * 1000) if lat
                       else (float("nan"),) * 3)
    return (f"   {result['clients']:>7} {result['delivered']:>9}/{result['expected']:<9} {p50:>8.1f} {p95:>8.1f} "
            f"{worst:>8.1f} {result['cpu_s']:>8.2f} {result['rss_before'] / MB:>8.1f} {result['rss_during'] / MB:>8.1f} "
            f"{result['rss_after'] / MB:>8.1f} {result['subscribe_s']:>8.1f}")


HEAD = (f"   {'clients':>7} {'delivered/expected':>19} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'cpu s':>8} "
        f"{'RSS0 MB':>8} {'RSS1 MB':>8} {'RSS2 MB':>8} {'subs s':>8}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("--writer", type=int, required=True)
        p.add_argument("--events", type=int, required=True)
        p.add_argument("--rate", type=float, required=True)
        p.add_argument("--out", type=Path, required=True)
        a = p.parse_args()
        return writer(a.writer, a.events, a.rate, a.out)

    p = harness.parser(__doc__, timeout=600, pairs=False)
    p.add_argument("--clients", type=int, nargs="+", default=[500, 1000])
    p.add_argument("--events", type=int, default=50, help="rows the writer appends per measurement")
    p.add_argument("--rate", type=float, default=10.0, help="rows per second")
    p.add_argument("--connect-concurrency", type=int, default=100, help="clients connecting at once")
    p.add_argument("--read-timeout", type=float, default=30.0, help="seconds a client waits for the next bytes")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds clients may take after the last row is committed")
    args = p.parse_args()
    harness.raise_fd_limit(max(8192, 2 * max(args.clients) + 256))
    harness.header(f"SSE fan-out: {args.events} rows at {args.rate:g}/s from a writer process", args.threads)
    results: list[dict] = []

    def report() -> None:
        print(HEAD)
        for result in results:
            print(row(result))
            if result["errors"]:
                print(f"   {len(result['errors'])} client errors, first: {result['errors'][0]}")
            if result["duplicates"] or result["still_open"]:
                print(f"   duplicates {result['duplicates']}, clients still waiting at the end {result['still_open']}")
        print("   RSS0: server before the clients connect; RSS1: with them connected, end of the window; "
              "RSS2: after they left. subs s: time for all clients to subscribe.")
        print(f"   {harness.load()} (after)", flush=True)

    env = {"TRAINBOARD_WARM_WORKERS": "0", "TRAINBOARD_HEARTBEAT_TIMEOUT_S": "86400",
           "TRAINBOARD_TRAINER_THREADS": str(args.threads)}
    with harness.Watchdog(args.timeout) as watchdog:
        watchdog.report = report
        with harness.Server(env=env, watchdog=watchdog) as server:
            os.environ["TRAINBOARD_DATA_DIR"] = str(server.data_dir)
            os.environ.pop("TRAINBOARD_DATABASE_URL", None)
            server.data_dir.mkdir(parents=True)
            from app.core.db import upgrade_database

            upgrade_database()
            server.start()
            run_id, _ = make_run()
            print(HEAD, flush=True)
            for clients in args.clients:
                results.append(asyncio.run(measure(server.url, run_id, clients, args, server.pid, watchdog,
                                                   server.data_dir.parent)))
                print(row(results[-1]), flush=True)
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
