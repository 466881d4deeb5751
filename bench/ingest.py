"""Ingest throughput: event rows per second stored over HTTP (HttpRunStore against a real
`trainboard serve`, the ingest API) vs written directly to the database (DbSink), one run.

Both sides write to the same SQLite file: the server's. Each measurement creates a fresh external
run (`POST /api/ingest/runs`) and appends --rows `step` rows in batches of --batch (the trainer's
StoreSink sends one batch per ~0.25 s; a batch of 50 is a busy trainer's), timing from the first
append to the last acknowledged one. Pairs run HTTP, DB, HTTP, DB… in one invocation.

    .venv/bin/python bench/ingest.py [--rows 5000] [--batch 50] [--pairs 3] [--timeout 300]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def _rows(count: int, start: int) -> list[tuple[str, dict]]:
    return [("step", {"epoch": 1, "step": start + i, "loss": 0.5, "accuracy": 0.9, "samples": 32 * (start + i)})
            for i in range(count)]


def main() -> int:
    p = harness.parser(__doc__, timeout=300)
    p.add_argument("--rows", type=int, default=5000, help="rows per measurement (default 5000)")
    p.add_argument("--batch", type=int, default=50, help="rows per append (default 50)")
    args = p.parse_args()
    harness.header("ingest: rows/s over HTTP vs direct database writes", args.threads)
    http_side, db_side = harness.Side("HTTP store (ingest API)"), harness.Side("DbSink (direct)")

    with harness.Watchdog(args.timeout) as watchdog:
        watchdog.report = lambda: print(harness.table(http_side, db_side, what="seconds"), flush=True)
        env = {"TRAINBOARD_WARM_WORKERS": "0", "TRAINBOARD_HEARTBEAT_TIMEOUT_S": "3600"}
        with harness.Server(env=env, watchdog=watchdog) as server:
            server.start()
            os.environ["TRAINBOARD_DATA_DIR"] = str(server.data_dir)
            os.environ.pop("TRAINBOARD_DATABASE_URL", None)
            import httpx

            from app.core.config import get_settings
            from app.runs.http_store import HttpRunStore
            from app.runs.sink import DbSink

            get_settings.cache_clear()

            def external() -> tuple[int, str]:
                answer = httpx.post(f"{server.url}/api/ingest/runs", json={"name": "bench"}, timeout=30).json()
                return answer["id"], answer["token"]

            def over_http() -> float:
                run_id, token = external()
                store = HttpRunStore(server.url, run_id, token)
                start = time.perf_counter()
                for first in range(0, args.rows, args.batch):
                    store.append(_rows(min(args.batch, args.rows - first), first))
                elapsed = time.perf_counter() - start
                if store.unsent:
                    raise RuntimeError(f"{store.unsent} rows were not acknowledged")
                store.close()
                return elapsed

            def direct() -> float:
                run_id, _token = external()
                sink = DbSink(run_id)
                start = time.perf_counter()
                for first in range(0, args.rows, args.batch):
                    sink.append(_rows(min(args.batch, args.rows - first), first))
                return time.perf_counter() - start

            harness.interleave(args.pairs, http_side, over_http, db_side, direct)
    print(harness.table(http_side, db_side, what="seconds"))
    for side in (http_side, db_side):
        print(f"   {side.name:<36} median {args.rows / statistics.median(side.times):,.0f} rows/s "
              f"(batches of {args.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
