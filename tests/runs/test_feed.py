"""The all-runs status feed (/api/events) on SQLite: numbered in commit order, gap-free, resumable.

The same feed on a real PostgreSQL server, with writers committing out of row-id order, is tested
in tests/core/test_postgres.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.runs.test_stream import ThreadServer, _parse


def _new_run(db_session, status: str = "queued") -> int:
    from app.runs.events import append_events
    from app.runs.models import Run

    run = Run(spec={"layers": []}, dataset="digits", config={}, status=status)
    db_session.add(run)
    db_session.flush()
    append_events(db_session, run.id, [("status", {"status": status})])
    return run.id


def _follow(cursor: int, page: int = 2) -> list:
    from app.runs.stream import status_fetch

    seen = []
    while batch := status_fetch(cursor, page):
        seen.extend(batch)
        cursor = batch[-1].id
    return seen


def test_status_events_are_numbered_in_commit_order_without_gaps(data_dir):
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import RunEvent

    with session_scope() as db_session:
        first, second = _new_run(db_session), _new_run(db_session)
        # Other kinds never enter the feed; two statuses in one call get consecutive numbers.
        append_events(db_session, first, [("step", {"epoch": 1, "step": 1}), ("status", {"status": "running"}),
                                          ("log", {"message": "hi"}), ("status", {"status": "completed"})])
    with pytest.raises(RuntimeError), session_scope() as db_session:  # rolled back: takes no number
        append_events(db_session, second, [("status", {"status": "running"})])
        db_session.flush()
        raise RuntimeError("the writer gave up")
    with session_scope() as db_session:  # a session reused after a rollback forgets the lost rows
        append_events(db_session, second, [("status", {"status": "failed"})])
        db_session.rollback()
        append_events(db_session, second, [("status", {"status": "cancelled"})])
    middle = _follow(0)[1].id

    seen = _follow(0)
    assert [(e.data["run_id"], e.data["status"]) for e in seen] == [
        (first, "queued"), (second, "queued"), (first, "running"), (first, "completed"), (second, "cancelled")]
    assert [e.id for e in seen] == [1, 2, 3, 4, 5]
    assert [e.data["seq"] for e in seen] == [1, 1, 3, 5, 2]  # each event's place in its run
    assert [e.id for e in _follow(middle)] == [3, 4, 5]
    with session_scope(write=False) as db_session:
        assert db_session.execute(text("select value from feed_counter")).scalar() == 5
        unnumbered = db_session.query(RunEvent).filter(RunEvent.feed_id.is_(None)).all()
    assert sorted(e.kind for e in unnumbered) == ["log", "step"]


def test_the_migration_numbers_existing_status_events_by_row_id(data_dir, tmp_path, monkeypatch):
    """Existing status rows keep their row id as feed id (the old feed's cursor), so a dashboard that
    reconnects across the upgrade with its Last-Event-ID neither misses nor repeats an event."""
    from alembic.config import Config

    from alembic import command
    from app.core.config import get_settings
    from app.core.db import make_engine, reset_engine_cache, session_scope, upgrade_database
    from app.runs.events import append_events

    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0002")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("insert into runs (id, name, spec, dataset, config, status, cancel_requested, "
                                "created_at, epochs_total, epoch, total_params, last_seq) values "
                                "(1, '', '{}', 'digits', '{}', 'running', 0, '2026-01-01', 1, 0, 0, 3)"))
        for row_id, kind in [(1, "status"), (2, "step"), (3, "status")]:
            connection.execute(text("insert into run_events (id, run_id, seq, kind, payload, ts) "
                                    f"values ({row_id}, 1, {row_id}, '{kind}', '{{\"status\": \"x\"}}', 0)"))
    engine.dispose()

    monkeypatch.setenv("TRAINBOARD_DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine_cache()
    upgrade_database()
    with session_scope(write=False) as db_session:
        feed = db_session.execute(text("select id, feed_id from run_events order by id")).all()
        assert db_session.execute(text("select value from feed_counter")).scalar() == 3
    assert feed == [(1, 1), (2, None), (3, 3)]
    with session_scope() as db_session:  # the next status event continues after the old ids
        append_events(db_session, 1, [("status", {"status": "completed"})])
    assert [(e.id, e.data["seq"]) for e in _follow(1)] == [(3, 3), (4, 4)]


@pytest.fixture
def app(data_dir):
    from app.main import create_app

    return create_app(start_executor=False)


def test_api_events_sends_feed_ids_and_resumes_from_last_event_id(app):
    """/api/events streams from the feed: `id:` is the feed number, and Last-Event-ID resumes
    exactly after it (read whole with ?after=, then resumed in the middle)."""
    from app.core.db import session_scope
    from app.runs.events import append_events

    with session_scope() as db_session:
        runs = [_new_run(db_session) for _ in range(3)]
    for run_id in runs:
        with session_scope() as db_session:
            append_events(db_session, run_id, [("status", {"status": "running"})])
    expected = _follow(0)
    assert len(expected) == 6
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        def read(n: int, **kwargs) -> list[dict]:
            events = []
            with client.stream("GET", "/api/events", **kwargs) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                buffer = ""
                for chunk in response.iter_text():
                    buffer += chunk
                    events = [e for e in _parse(buffer.replace("\r\n", "\n")) if "id" in e]
                    if len(events) >= n:
                        return events
            return events

        everything = read(6, params={"after": 0})
        assert [int(e["id"]) for e in everything] == [e.id for e in expected]
        assert [json.loads(e["data"])["run_id"] for e in everything] == [e.data["run_id"] for e in expected]
        assert {e["event"] for e in everything} == {"status"}
        resumed = read(3, headers={"Last-Event-ID": str(expected[2].id)})
        assert [int(e["id"]) for e in resumed] == [e.id for e in expected[3:]]
