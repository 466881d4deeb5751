"""Dashboard at scale: p50/p95 server times of the pages and API calls a team with 10,000 runs uses, and
the metric write rate, on a database seeded with 10,000 runs and >= 2,000,000 event rows (issue 16).

Seeds a fresh database with Core bulk inserts: --runs runs (10,000), of which the first is a completed
run with 100,000 step rows, nine more have 20,000 each, and the rest ~175 rows each (status, steps,
epochs): >= 2,000,000 rows in all. Then, through the app in this process (FastAPI's TestClient: the
time of a request without the network), --samples requests each of:

  dashboard (the runs list page, first page), dashboard filtered by status, searched and sorted by a
  column, and its page 50 (keyset), the runs API's first page and its page 50 (keyset cursor, and by
  offset), the run page (HTML) of the 100,000-step run and the chart snapshot it fetches
  (/api/runs/{id}/series, its bytes), GET /api/runs/{id}/metrics?limit=10000, GET /api/compare of the
  10 longest runs;

then the metric write rate through DbSink (batches of 50 rows as a busy trainer flushes them, and a
backlog of --backlog rows in one append, split into short transactions: their longest is printed),
and the dashboard's p95 while 8 processes write metrics. MLflow's log_batch is compared only where
mlflow is installed.

    .venv/bin/python bench/dashboard_scale.py [--small] [--postgres URL] [--samples 30]

--small: 1,000 runs and ~200,000 rows (under a minute). --postgres URL: an empty PostgreSQL database
(it is migrated and filled; nothing is dropped). Default: SQLite in a temporary data dir.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

TARGETS_MS = {"runs list": 150, "run page": 250, "compare": 100, "metrics API": 150}
BIG_STEPS = 100_000
LONG_RUNS, LONG_STEPS = 9, 20_000
EPOCHS = 20
WRITE_BATCH = 50


def _spec_and_config() -> tuple[dict, dict]:
    from app.architectures import presets
    from app.core.config import get_settings
    from app.datasets import registry
    from app.runs.schemas import TrainConfigIn

    info = registry.get_dataset_info("digits", get_settings().data_dir)
    return presets.model_for(None, info), TrainConfigIn(epochs=EPOCHS).to_engine_dict()


def _events(steps: int, status: str, rng: random.Random, t0: float) -> list[tuple[str, dict]]:
    """A run's rows: queued, running, `steps` step rows spread over EPOCHS epochs with an epoch row after
    each, the final status."""
    rows: list[tuple[str, dict]] = [("status", {"status": "queued", "ts": t0}), ("status", {"status": "running", "ts": t0 + 1})]
    per_epoch = max(1, steps // EPOCHS)
    ts, step, loss = t0 + 2, 0, 2.3
    for epoch in range(1, EPOCHS + 1):
        for index in range(per_epoch):
            step += 1
            ts += 0.25
            loss *= 0.99995
            rows.append(("step", {"epoch": epoch, "step": step, "loss": round(loss + rng.random() * 0.05, 5),
                                  "accuracy": round(min(1.0, 1 - loss / 2.5), 5), "epoch_step": index + 1,
                                  "epoch_steps": per_epoch, "epoch_progress": round((index + 1) / per_epoch, 5),
                                  "epoch_elapsed": round(0.25 * (index + 1), 3), "samples_per_sec": 12800.0, "ts": ts}))
        rows.append(("epoch", {"epoch": epoch, "train_loss": round(loss, 5), "train_accuracy": round(1 - loss / 2.5, 5),
                               "val_loss": round(loss * 1.1, 5), "val_accuracy": round(1 - loss / 2.4, 5),
                               "lr": 0.001, "epoch_time": 0.25 * per_epoch, "samples_per_sec": 12800.0, "ts": ts}))
    rows.append(("status", {"status": status, "ts": ts + 1}))
    return rows


def seed(runs: int, small_steps: int, long_steps: int = LONG_STEPS) -> dict:
    """Fill the database with Core bulk inserts; returns what was made (ids, counts, seconds)."""
    from sqlalchemy import insert, update

    from app.core.db import get_engine
    from app.runs.models import Evaluation, FeedCounter, Run, RunEvent

    started = time.perf_counter()
    rng = random.Random(0)
    spec, config = _spec_and_config()
    statuses = ["completed"] * 8 + ["failed", "cancelled"]
    engine = get_engine()
    events_table, total_rows, feed = RunEvent.__table__, 0, 0
    with engine.begin() as connection:
        run_rows = []
        for index in range(runs):
            status = "completed" if index < 1 + LONG_RUNS else statuses[index % len(statuses)]
            run_rows.append({"name": f"run {index + 1}: digits CNN lr {0.001 * (1 + index % 7):g}", "spec": spec,
                             "dataset": "digits", "config": {**config, "optimizer": {"name": "adam", "lr": 0.001 * (1 + index % 7)}},
                             "status": status, "epochs_total": EPOCHS, "epoch": EPOCHS, "total_params": 26_000,
                             "best_val_accuracy": 0.9 + rng.random() * 0.09, "test_accuracy": 0.9 + rng.random() * 0.09,
                             "test_loss": rng.random(), "train_time_s": 60 + rng.random() * 60, "failure_reason":
                             "diverged" if status == "failed" else None, "last_seq": 0})
        connection.execute(insert(Run.__table__), run_rows)
    with engine.connect() as connection:
        ids = [row[0] for row in connection.exec_driver_sql("SELECT id FROM runs ORDER BY id")]
    t0 = time.time() - 86_400 * 30
    buffer: list[dict] = []
    last_seqs: list[dict] = []

    def flush() -> None:
        with engine.begin() as connection:
            connection.execute(insert(events_table), buffer)
        buffer.clear()

    for index, run_id in enumerate(ids):
        steps = BIG_STEPS if index == 0 else long_steps if index <= LONG_RUNS else small_steps
        events = _events(steps, "completed" if index <= LONG_RUNS else statuses[index % len(statuses)], rng,
                         t0 + index * 200)
        for seq, (kind, payload) in enumerate(events, start=1):
            row = {"run_id": run_id, "seq": seq, "kind": kind, "epoch": payload.get("epoch"), "step": payload.get("step"),
                   "payload": payload, "ts": payload["ts"], "feed_id": None, "trainer_seq": None,
                   "loss": None, "accuracy": None, "progress": None}
            if kind == "step":  # the metric columns a trainer's rows carry (app/runs/events.py)
                row.update(loss=payload.get("loss"), accuracy=payload.get("accuracy"),
                           progress=payload.get("epoch_progress"))
            if kind == "status":
                feed += 1
                row["feed_id"] = feed
            buffer.append(row)
        total_rows += len(events)
        last_seqs.append({"b_id": run_id, "b_last": len(events)})
        if len(buffer) >= 20_000:
            flush()
    if buffer:
        flush()
    from sqlalchemy import bindparam

    with engine.begin() as connection:
        connection.execute(update(Run.__table__).where(Run.__table__.c.id == bindparam("b_id"))
                           .values(last_seq=bindparam("b_last")), last_seqs)
        connection.execute(update(FeedCounter.__table__).values(value=feed))
        import numpy as np

        from app.engine.metrics import summarize

        matrix = np.diag([18] * 10) + np.ones((10, 10), dtype=int) - np.eye(10, dtype=int)
        payload = summarize(matrix, [str(c) for c in range(10)])
        connection.execute(insert(Evaluation.__table__), [
            {"run_id": run_id, "split": "test", "epoch": EPOCHS, "accuracy": payload.get("accuracy"), "loss": 0.2,
             "payload": payload}
            for run_id in ids[:1 + LONG_RUNS]])
    analyzed = time.perf_counter()
    if engine.dialect.name == "sqlite":
        from app.core.db import analyze_sqlite

        analyze_sqlite()  # what every start of the server does after its migrations
    else:
        with engine.connect() as connection:  # what autovacuum does soon after a bulk load
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    return {"ids": ids, "rows": total_rows, "seconds": time.perf_counter() - started,
            "analyze_s": time.perf_counter() - analyzed}


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95


def measure(client, url: str, samples: int) -> tuple[list[float], int]:
    """Seconds of each request (status 200 checked) and the bytes of the last answer."""
    times, size = [], 0
    client.get(url)  # warm: templates compiled, caches filled, as on a server that is up
    for _ in range(samples):
        start = time.perf_counter()
        answer = client.get(url)
        times.append(time.perf_counter() - start)
        if answer.status_code != 200:
            raise SystemExit(f"{url}: {answer.status_code} {answer.text[:300]}")
        size = len(answer.content)
    return times, size


def _writer(database_env: dict[str, str], run_id: int, stop_at: float, batch: int) -> None:
    """A trainer writing metrics: `batch` step rows every 0.25 s through DbSink until `stop_at`."""
    os.environ.update(database_env)
    from app.runs.sink import DbSink

    sink, step = DbSink(run_id), 0
    while time.time() < stop_at:
        sink.append([("step", {"epoch": 1, "step": step + i, "loss": 0.5, "accuracy": 0.9, "ts": time.time()})
                     for i in range(batch)])
        step += batch
        time.sleep(0.25)


def new_running_run() -> int:
    from app.core.db import session_scope
    from app.runs import lifecycle
    from app.runs.models import Run

    spec, config = _spec_and_config()
    with session_scope() as db_session:
        run = lifecycle.enqueue(db_session, Run(name="writer", spec=spec, dataset="digits", config=config, epochs_total=1))
        return run.id


def write_rate(rows: int, batch: int) -> tuple[float, float]:
    """(rows/s, longest transaction in ms) of DbSink.append over `rows` rows in appends of `batch`."""
    from sqlalchemy import event

    from app.core.db import get_engine
    from app.runs.sink import DbSink

    run_id = new_running_run()
    engine, began, longest = get_engine(), {}, [0.0]

    def on_begin(connection) -> None:
        began[id(connection)] = time.perf_counter()

    def on_commit(connection) -> None:
        if id(connection) in began:
            longest[0] = max(longest[0], time.perf_counter() - began.pop(id(connection)))

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_commit)
    now = time.time()
    payloads = [("step", {"epoch": 1, "step": i, "loss": 0.5 - i * 1e-7, "accuracy": 0.9, "epoch_step": i,
                          "epoch_steps": rows, "epoch_progress": i / rows, "samples_per_sec": 12800.0, "ts": now + i})
                for i in range(rows)]
    sink = DbSink(run_id)
    try:
        start = time.perf_counter()
        for first in range(0, rows, batch):
            sink.append(payloads[first:first + batch])
        elapsed = time.perf_counter() - start
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "commit", on_commit)
    return rows / elapsed, longest[0] * 1000


def main() -> int:
    p = harness.parser(__doc__, timeout=900, pairs=False)
    p.add_argument("--small", action="store_true", help="1,000 runs and ~200,000 rows (under a minute)")
    p.add_argument("--runs", type=int, help="runs to seed (default 10,000; 1,000 with --small)")
    p.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database (default: SQLite in a temp dir)")
    p.add_argument("--samples", type=int, help="requests per measurement (default 30; 15 with --small)")
    p.add_argument("--backlog", type=int, help="rows of the backlog append (default 200,000; 50,000 with --small)")
    p.add_argument("--writers", type=int, default=8, help="processes writing metrics during the last measurement")
    args = p.parse_args()
    runs = args.runs or (1_000 if args.small else 10_000)
    samples = args.samples or (15 if args.small else 30)
    backlog = args.backlog or (50_000 if args.small else 200_000)
    # The rest of the runs share what is left to reach ~200k (small) or >= 2,000,000 rows.
    target_rows = 200_000 if args.small else 2_000_000
    long_steps = 5_000 if args.small else LONG_STEPS
    rest = runs - 1 - LONG_RUNS
    share = (target_rows - (BIG_STEPS + LONG_RUNS * long_steps) - rest * (EPOCHS + 3)) / max(1, rest)
    small_steps = max(EPOCHS, -(-int(share) // EPOCHS) * EPOCHS)  # whole steps per epoch, rounded up

    tmp = tempfile.TemporaryDirectory(prefix="trainboard-scale-")
    data_dir = Path(tmp.name) / "data"
    data_dir.mkdir()
    env = {"TRAINBOARD_DATA_DIR": str(data_dir)}
    if args.postgres:
        env["TRAINBOARD_DATABASE_URL"] = args.postgres
    else:
        os.environ.pop("TRAINBOARD_DATABASE_URL", None)
    os.environ.update(env)
    harness.header(f"dashboard at scale: {runs:,} runs, {'PostgreSQL' if args.postgres else 'SQLite'}", args.threads)
    print(f"   python threads: web requests in this process, one at a time; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    results: list[tuple[str, float, float, str]] = []

    def report() -> None:
        print(f"\n   {'measurement':<46} {'p50':>9} {'p95':>9}  target / note")
        for name, p50, p95, note in results:
            print(f"   {name:<46} {p50:>7.1f}ms {p95:>7.1f}ms  {note}")

    with harness.Watchdog(args.timeout) as watchdog:
        watchdog.report = report
        from fastapi.testclient import TestClient
        from sqlalchemy import text

        from app.core.db import get_engine, upgrade_database
        from app.main import create_app

        upgrade_database()
        with get_engine().connect() as connection:
            if connection.execute(text("SELECT count(*) FROM runs")).scalar():
                raise SystemExit("the database already holds runs: give an empty one")
        made = seed(runs, small_steps, long_steps)
        ids = made["ids"]
        print(f"   seeded {len(ids):,} runs and {made['rows']:,} event rows in {made['seconds']:.1f} s "
              f"(ANALYZE {made['analyze_s']:.2f} s); run {ids[0]} has {BIG_STEPS:,} step rows", flush=True)

        def add(name: str, times: list[float], note: str = "", target: str | None = None) -> None:
            p50, p95 = (t * 1000 for t in percentiles(times))
            if target:
                limit = TARGETS_MS[target]
                note = f"p95 < {limit} ms: {'met' if p95 < limit else 'MISSED'}" + (f"; {note}" if note else "")
            results.append((name, p50, p95, note))
            print(f"   {name:<46} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  {note}", flush=True)

        with TestClient(create_app(start_executor=False), base_url="http://localhost") as client:
            page = 50
            times, size = measure(client, "/", samples)
            add("dashboard, first page (100 rows, HTML)", times, f"{size / 1024:.0f} KiB", "runs list")
            times, _ = measure(client, "/?status=failed", samples)
            add("dashboard filtered (status=failed)", times, "", "runs list")
            searched = "/?q=" + quote("mlp val_accuracy>0.5") + "&sort=test_accuracy&order=desc"
            times, _ = measure(client, searched, samples)
            add("dashboard searched, sorted by test accuracy", times, "q=mlp val_accuracy>0.5", "runs list")
            cursor, dash_page = "", min(page, max(1, len(ids) // 100))
            for _ in range(dash_page - 1):  # the cursor of that page, walked as a reader clicking Next would
                cursor = client.get("/api/runs", params={"limit": 100, "cursor": cursor}).json()["next_cursor"]
            times, _ = measure(client, f"/?cursor={cursor}", samples)
            add(f"dashboard, page {dash_page} (keyset, 100 rows)", times, "", "runs list")
            times, _ = measure(client, "/api/runs?limit=50", samples)
            add("runs API, first page (50)", times, "", "runs list")
            api_cursor = ""
            for _ in range(page - 1):
                api_cursor = client.get("/api/runs", params={"limit": 50, "cursor": api_cursor}).json()["next_cursor"]
            times, _ = measure(client, f"/api/runs?limit=50&cursor={api_cursor}", samples)
            add(f"runs API, page {page} (keyset cursor)", times, "", "runs list")
            times, _ = measure(client, f"/api/runs?limit=50&offset={50 * (page - 1)}", samples)
            add(f"runs API, page {page} (offset {50 * (page - 1)})", times, "offset (old clients)", "runs list")
            times, size = measure(client, f"/runs/{ids[0]}", samples)
            add(f"run page of the {BIG_STEPS:,}-step run (HTML)", times, f"{size / 1024:.0f} KiB of HTML", "run page")
            snapshot_url = f"/api/runs/{ids[0]}/series?points=2000&events=400"  # what static/js/run.js asks
            from app.runs import series as series_module

            builds = []  # the first open after the run wrote: the snapshot built from the rows, no cache
            for _ in range(min(samples, 10)):
                series_module._CACHE.clear()
                start = time.perf_counter()
                assert client.get(snapshot_url).status_code == 200
                builds.append(time.perf_counter() - start)
            add("its chart snapshot, first build (uncached)", builds, "100,000 step rows read, MinMaxLTTB", "run page")
            times, snapshot = measure(client, snapshot_url, samples)
            add("its chart snapshot (/series, 2,000 points a series)", times,
                f"{snapshot / 1024:.0f} KiB of chart data (target < 1 MB: {'met' if snapshot < 1e6 else 'MISSED'}); "
                "cached until the run writes again; the stream then sends only newer events", "run page")
            rng = random.Random(1)
            urls = [f"/api/runs/{ids[0]}/metrics?limit=10000&after={rng.randrange(0, BIG_STEPS - 10_000)}"
                    for _ in range(samples)]
            client.get(urls[0])
            times = []
            for url in urls:
                start = time.perf_counter()
                answer = client.get(url)
                times.append(time.perf_counter() - start)
                assert answer.status_code == 200 and len(answer.json()) == 10_000
            add("metrics API, 10,000 rows", times, f"{len(answer.content) / 1e6:.1f} MB", "metrics API")
            compared = ",".join(str(i) for i in ids[:10])
            times, _ = measure(client, f"/api/compare?runs={compared}", samples)
            add("compare API, 10 runs (the longest ones)", times, "", "compare")

            rate_small, longest_small = write_rate(10_000 if args.small else 20_000, WRITE_BATCH)
            print(f"   metric writes, DbSink, batches of {WRITE_BATCH}: {rate_small:,.0f} rows/s "
                  f"(longest transaction {longest_small:.1f} ms)", flush=True)
            rate_big, longest_big = write_rate(backlog, backlog)
            from app.runs.sink import CHUNK_ROWS

            print(f"   metric writes, DbSink, one backlog of {backlog:,} rows (chunks of {CHUNK_ROWS:,}): "
                  f"{rate_big:,.0f} rows/s, longest transaction {longest_big:.1f} ms "
                  f"(targets >= 100,000 rows/s: {'met' if rate_big >= 100_000 else 'MISSED'}; "
                  f"<= ~100 ms: {'met' if longest_big <= 100 else 'MISSED'})", flush=True)
            results.append((f"writes: {rate_small:,.0f} rows/s in 50s, {rate_big:,.0f} rows/s backlog", 0.0,
                            longest_big, "p95 column: longest transaction"))
            try:
                import mlflow  # noqa: F401

                print("   mlflow is installed, but this bench does not time its log_batch yet", flush=True)
            except ImportError:
                print("   MLflow log_batch: not compared (mlflow is not installed here)", flush=True)

            if args.writers:
                writer_runs = [new_running_run() for _ in range(args.writers)]
                stop_at = time.time() + 30 + samples * 0.5
                context = multiprocessing.get_context("spawn")
                processes = [context.Process(target=_writer, args=(env, run_id, stop_at, 250)) for run_id in writer_runs]
                for process in processes:
                    process.start()
                    watchdog.track(process.pid)
                counted = "SELECT count(DISTINCT run_id) FROM run_events WHERE kind = 'step' AND run_id IN (" \
                    + ",".join(map(str, writer_runs)) + ")"
                started = time.time()
                while time.time() - started < 60:  # until every writer has imported the app and written
                    with get_engine().connect() as connection:
                        if connection.execute(text(counted)).scalar() == len(writer_runs):
                            break
                    time.sleep(0.2)
                window = time.time()
                with get_engine().connect() as connection:
                    before = connection.execute(text("SELECT count(*) FROM run_events WHERE run_id IN ("
                                                     + ",".join(map(str, writer_runs)) + ")")).scalar()
                times, _ = measure(client, "/", samples)
                with get_engine().connect() as connection:
                    during = connection.execute(text("SELECT count(*) FROM run_events WHERE run_id IN ("
                                                     + ",".join(map(str, writer_runs)) + ")")).scalar() - before
                window = time.time() - window
                for process in processes:
                    process.terminate()  # done measuring: stop them now
                    process.join(timeout=60)
                add(f"dashboard while {args.writers} processes write metrics", times,
                    f"{during / window:,.0f} rows/s written meanwhile; target p95 < 300 ms: "
                    + ("met" if percentiles(times)[1] < 0.3 else "MISSED"))
    report()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
