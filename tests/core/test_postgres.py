"""The same schema and run lifecycle on a real PostgreSQL server (a throwaway cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests import pg
from tests.conftest import LiveServer
from tests.runs.helpers import run_body, wait_status

pytestmark = pytest.mark.xdist_group("postgres")


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """A new, empty database on the test process's PostgreSQL server (tests/pg.py)."""
    url = pg.server().create_database("module")
    yield url
    pg.server().drop_database(url)


@pytest.fixture
def pg_settings(postgres_url, tmp_path, monkeypatch):
    from app.core.config import get_settings
    from app.core.db import reset_engine_cache

    monkeypatch.setenv("TRAINBOARD_DATABASE_URL", postgres_url)
    monkeypatch.setenv("TRAINBOARD_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    reset_engine_cache()
    yield postgres_url
    reset_engine_cache()
    get_settings.cache_clear()


def test_migrations_match_models_on_postgres(pg_settings):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.core import all_models  # noqa: F401
    from app.core.db import Base, get_engine, upgrade_database

    upgrade_database()
    with get_engine().connect() as connection:
        assert connection.execute(text("select version()")).scalar().startswith("PostgreSQL")
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], diff


def test_a_run_trains_to_completion_on_postgres(pg_settings, tmp_path):
    server = LiveServer(tmp_path / "live", env={"TRAINBOARD_DATABASE_URL": pg_settings}).start()
    try:
        with server.api() as api:
            run = api.post("/api/runs", json=run_body(epochs=2)).json()
            done = wait_status(api, run["id"], "completed", "failed")
            assert done["status"] == "completed", done["failure_reason"]
            rows = api.get(f"/api/runs/{run['id']}/metrics").json()
            seqs = [r["seq"] for r in rows]
            assert seqs == list(range(1, len(seqs) + 1))
            assert [r["payload"]["status"] for r in rows if r["kind"] == "status"] == [
                "queued", "starting", "running", "completed"]
            assert sum(r["kind"] == "epoch" for r in rows) == 2
            assert api.get(f"/api/runs/{run['id']}/evaluation").json()["accuracy"] > 0.5
        assert not (Path(server.data_dir) / "trainboard.db").exists(), "must not fall back to SQLite"
    finally:
        server.stop()


def _status_run(db_session) -> int:
    from app.runs.events import append_events
    from app.runs.models import Run

    run = Run(spec={"layers": []}, dataset="digits", config={}, status="queued")
    db_session.add(run)
    db_session.flush()
    append_events(db_session, run.id, [("status", {"status": "queued"})])
    return run.id


def _follow(cursor: int) -> tuple[list, int]:
    """Read the all-runs feed from `cursor` until it has nothing more, two rows a page."""
    from app.runs.stream import status_fetch

    seen = []
    while batch := status_fetch(cursor, 2):
        seen.extend(batch)
        cursor = batch[-1].id
    return seen, cursor


def _by_row_id(after: int) -> list[tuple[int, int]]:
    """What the feed did before feed ids: status rows with run_events.id > after."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.runs.models import RunEvent

    with session_scope(write=False) as db_session:
        return [tuple(row) for row in db_session.execute(
            select(RunEvent.id, RunEvent.run_id).where(RunEvent.kind == "status", RunEvent.id > after)
            .order_by(RunEvent.id))]


def test_the_status_feed_never_passes_an_event_that_commits_late_on_postgres(pg_settings):
    """Row ids come from a sequence at insert time, and here the writer with the lower id commits
    later. A reader following the feed between the two commits still gets both events, once each;
    paging by row id (the old cursor) loses the late one."""
    from app.core.db import session_scope, upgrade_database
    from app.runs.events import append_events
    from app.runs.models import RunEvent
    from app.runs.stream import latest_feed_id

    upgrade_database()
    with session_scope() as db_session:
        run_a, run_b = _status_run(db_session), _status_run(db_session)
    cursor = latest_feed_id()
    old = _by_row_id(0)
    old_cursor = old[-1][0]

    with session_scope() as late:
        append_events(late, run_a, [("status", {"status": "running"})])
        late.flush()  # the insert takes the lower row id now ...
        with session_scope() as early:
            append_events(early, run_b, [("status", {"status": "running"})])
        # ... and the higher one has committed first: both readers look now.
        seen, cursor = _follow(cursor)
        old = _by_row_id(old_cursor)
        old_cursor = old[-1][0] if old else old_cursor
    more, cursor = _follow(cursor)  # `late` has committed
    seen += more
    old_later = _by_row_id(old_cursor)

    with session_scope(write=False) as db_session:
        rows = {row.run_id: row for row in db_session.query(RunEvent).filter(RunEvent.kind == "status")
                if row.payload["status"] == "running"}
    assert rows[run_a].id < rows[run_b].id, "the late writer must hold the lower row id"
    assert old == [(rows[run_b].id, run_b)] and old_later == [], "the row-id cursor passes the late row"
    assert [(e.data["run_id"], e.data["status"]) for e in seen] == [(run_b, "running"), (run_a, "running")]
    assert [e.id for e in seen] == [rows[run_b].feed_id, rows[run_b].feed_id + 1]
    assert seen[1].id == rows[run_a].feed_id


def test_a_writer_holding_a_feed_number_makes_the_next_wait_until_it_commits_on_postgres(pg_settings):
    """Feed numbers become visible in order: while one transaction has taken its number and not yet
    committed, the next status writer waits for it, and the reader sees neither until the first commits."""
    import threading
    import time

    from sqlalchemy import event

    from app.core.db import get_engine, session_scope, upgrade_database
    from app.runs.events import append_events

    upgrade_database()
    with session_scope() as db_session:
        run_a, run_b = _status_run(db_session), _status_run(db_session)
    cursor = latest_cursor = _follow(0)[1]
    first_commit_reached, release = threading.Event(), threading.Event()
    first_connection = []

    def hold_first_commit(connection):
        if connection.connection.dbapi_connection in first_connection:
            first_commit_reached.set()
            assert release.wait(60), "the test never released the first commit"

    def first_writer():
        with session_scope() as db_session:
            first_connection.append(db_session.connection().connection.dbapi_connection)
            append_events(db_session, run_a, [("status", {"status": "running"})])

    def second_writer():
        with session_scope() as db_session:
            append_events(db_session, run_b, [("status", {"status": "running"})])

    def waiting_on_a_lock() -> int:
        with get_engine().connect() as connection:
            return connection.execute(text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock'")).scalar()

    event.listen(get_engine(), "commit", hold_first_commit)
    try:
        first = threading.Thread(target=first_writer)
        first.start()
        assert first_commit_reached.wait(30), "the first writer never reached its commit"
        second = threading.Thread(target=second_writer)
        second.start()
        deadline = time.monotonic() + 30
        while waiting_on_a_lock() == 0:
            assert time.monotonic() < deadline, "the second status writer did not wait for the first"
            time.sleep(0.02)
        assert _follow(cursor)[0] == [], "nothing is visible before the first commit"
        release.set()
        first.join(30)
        second.join(30)
        assert not first.is_alive() and not second.is_alive()
    finally:
        release.set()
        event.remove(get_engine(), "commit", hold_first_commit)
    seen, _ = _follow(latest_cursor)
    assert [(e.data["run_id"], e.id) for e in seen] == [(run_a, cursor + 1), (run_b, cursor + 2)]
