"""The metric write path at full speed: Core bulk inserts, a big batch split into short transactions,
and seq still gap-free and in emission order (with status events interleaving, and when a chunk fails).
Also the bulk read path (`GET /api/runs/{id}/metrics`) answers what the response model did, and the
(run_id, kind, seq) index is the one the per-kind reads use. Runs on SQLite and on PostgreSQL
(TRAINBOARD_TEST_DB=postgres)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select, text


def _new_run(status: str = "running") -> int:
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import Run

    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status=status)
        db_session.add(run)
        db_session.flush()
        append_events(db_session, run.id, [("status", {"status": status})])
        return run.id


def _steps(count: int, start: int = 0) -> list[tuple[str, dict]]:
    return [("step", {"epoch": 1, "step": start + i, "loss": 1.0 / (start + i + 1), "ts": 1000.0 + start + i})
            for i in range(count)]


def _rows(run_id: int) -> list[tuple]:
    from app.core.db import session_scope
    from app.runs.models import RunEvent

    with session_scope(write=False) as db_session:
        return [tuple(row) for row in db_session.execute(
            select(RunEvent.seq, RunEvent.kind, RunEvent.step, RunEvent.feed_id, RunEvent.trainer_seq)
            .where(RunEvent.run_id == run_id).order_by(RunEvent.seq))]


def _last_seq(run_id: int) -> int:
    from app.core.db import session_scope
    from app.runs.models import Run

    with session_scope(write=False) as db_session:
        return db_session.scalar(select(Run.last_seq).where(Run.id == run_id))


def _count_commits():
    """A list that gets one entry per COMMIT on the app's engine."""
    from app.core.db import get_engine

    commits: list[int] = []
    event.listen(get_engine(), "commit", lambda _connection: commits.append(1))
    return commits


def test_a_big_batch_is_stored_in_chunks_each_its_own_transaction_gap_free(data_dir, monkeypatch):
    from app.runs import sink

    monkeypatch.setattr(sink, "CHUNK_ROWS", 100)
    run_id = _new_run()
    commits = _count_commits()
    sink.DbSink(run_id).append(_steps(1050))
    assert len(commits) == 11  # ten chunks of 100 and one of 50, each committed by itself

    rows = _rows(run_id)
    assert [seq for seq, *_ in rows] == list(range(1, 1052)) == list(range(1, _last_seq(run_id) + 1))
    assert [step for _, kind, step, *_ in rows if kind == "step"] == list(range(1050))  # emission order
    assert all(trainer_seq is None for *_, trainer_seq in rows)


def test_status_events_written_between_chunks_keep_seq_gap_free_and_steps_in_order(data_dir, monkeypatch):
    """A lifecycle writer (cancel, the reaper's log line) appends while a backlog is stored chunk by chunk:
    every row gets its own seq, none is lost or doubled, the steps stay in emission order and every status
    event has its feed number."""
    from app.core.db import session_scope
    from app.runs import sink
    from app.runs.events import append_events

    monkeypatch.setattr(sink, "CHUNK_ROWS", 50)
    run_id = _new_run()
    stop, written = threading.Event(), []

    def other_writer() -> None:
        while not stop.is_set() or len(written) < 5:
            with session_scope() as db_session:
                append_events(db_session, run_id, [("status", {"status": "running", "note": len(written)}),
                                                   ("log", {"message": f"line {len(written)}"})])
            written.append(1)

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        store = sink.DbSink(run_id)
        for first in range(0, 2000, 500):
            store.append(_steps(500, first))
    finally:
        stop.set()
        thread.join(timeout=60)

    rows = _rows(run_id)
    assert [seq for seq, *_ in rows] == list(range(1, _last_seq(run_id) + 1))
    assert [step for _, kind, step, *_ in rows if kind == "step"] == list(range(2000))
    statuses = [feed_id for _, kind, _, feed_id, _ in rows if kind == "status"]
    assert len(statuses) == 1 + len(written) and None not in statuses
    assert len([kind for _, kind, *_ in rows if kind == "log"]) == len(written)


def test_a_flush_reads_the_cancel_flag_in_its_own_transaction(data_dir):
    """The sink asks "should I stop?" after every batch: the batch's transaction answers it, so a flush
    is one transaction, and the next question (no batch in between) reads the database again."""
    from app.core.db import session_scope
    from app.runs import sink
    from app.runs.models import Run
    from app.runs.store import StoreSink

    run_id = _new_run()
    cancelled: list[bool] = []
    store_sink = StoreSink(sink.DbSink(run_id), on_cancel=lambda: cancelled.append(True))
    commits = _count_commits()
    store_sink.emit("step", {"epoch": 1, "step": 1, "loss": 0.5})
    store_sink.flush()
    assert len(commits) == 1 and not cancelled, "a batch and the cancel check: one transaction"
    with session_scope() as db_session:
        db_session.get(Run, run_id).cancel_requested = True
    store_sink.emit("step", {"epoch": 1, "step": 2, "loss": 0.4})
    store_sink.flush()
    assert cancelled == [True], "a cancel asked before the batch's transaction is seen with it"
    store = sink.DbSink(run_id)
    store.append(_steps(1, start=10))
    with session_scope() as db_session:
        db_session.get(Run, run_id).cancel_requested = False
    assert store.cancel_requested() is True, "the answer read with the batch"
    assert store.cancel_requested() is False, "asked again without a batch: read afresh"


def test_a_failure_between_chunks_leaves_no_gap_and_only_the_rest_is_sent_again(data_dir, monkeypatch):
    """The third chunk fails: the two committed chunks stay (gap-free), the third left nothing, and the
    trainer's StoreSink sends only the rows not stored, so nothing is stored twice."""
    from app.runs import sink
    from app.runs.store import PartlyStored, StoreSink

    monkeypatch.setattr(sink, "CHUNK_ROWS", 100)
    run_id = _new_run()
    real, calls = sink.persist_batch, []

    def failing(db_session, run, events, first_trainer_seq=None):
        calls.append(len(events))
        last = real(db_session, run, events, first_trainer_seq)
        if len(calls) == 3:
            raise OSError("disk full")  # after the chunk's rows were written: its transaction rolls back
        return last

    monkeypatch.setattr(sink, "persist_batch", failing)
    store = sink.DbSink(run_id)
    with pytest.raises(PartlyStored) as raised:
        store.append(_steps(450))
    assert raised.value.stored == 200
    assert [seq for seq, *_ in _rows(run_id)] == list(range(1, 202)) and _last_seq(run_id) == 201

    # Through the trainer's sink: the failed flush puts back only the 250 rows not stored.
    calls.clear()
    monkeypatch.setattr(sink, "persist_batch", failing)
    second = _new_run()
    sink_ = StoreSink(sink.DbSink(second), on_cancel=lambda: None)
    for kind, payload in _steps(450):
        sink_.emit(kind, payload)
    with pytest.raises(PartlyStored):
        sink_.flush()
    monkeypatch.setattr(sink, "persist_batch", real)
    sink_.flush()
    rows = _rows(second)
    assert [seq for seq, *_ in rows] == list(range(1, 452))
    assert [step for _, kind, step, *_ in rows if kind == "step"] == list(range(450))


def test_ingest_batches_keep_their_trainer_seq(data_dir):
    """persist_batch with the trainer's first seq numbers each row (no UPDATE afterwards): rows and
    trainer seqs line up, status events of the lifecycle in between take none."""
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.sink import persist_batch

    run_id = _new_run()
    with session_scope() as db_session:
        persist_batch(db_session, run_id, _steps(3), first_trainer_seq=1)
    with session_scope() as db_session:
        append_events(db_session, run_id, [("status", {"status": "running"})])
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [*_steps(2, 3), ("epoch", {"epoch": 1, "val_accuracy": 0.5})],
                      first_trainer_seq=4)
    rows = _rows(run_id)
    assert [(seq, kind, trainer_seq) for seq, kind, _, _, trainer_seq in rows] == [
        (1, "status", None), (2, "step", 1), (3, "step", 2), (4, "step", 3), (5, "status", None),
        (6, "step", 4), (7, "step", 5), (8, "epoch", 6)]


def test_metrics_api_answers_what_the_response_model_did(client):
    """The Core read path gives the same JSON as validating ORM rows through RunEventPublic did."""
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import RunEvent
    from app.runs.schemas import RunEventPublic

    run_id = _new_run()
    with session_scope() as db_session:
        append_events(db_session, run_id, [
            *_steps(5), ("epoch", {"epoch": 1, "val_accuracy": 0.9, "lr": 1e-3, "ts": 1234}),
            ("evaluation", {"split": "test", "epoch": 1, "accuracy": 0.91, "nested": {"a": [1, 2.5, None]}}),
            ("log", {"message": "naïve ünïcode ✓"}), ("status", {"status": "completed"})])
    with session_scope(write=False) as db_session:
        events = db_session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)).all()
        expected = [RunEventPublic.model_validate(e).model_dump(mode="json") for e in events]

    answer = client.get(f"/api/runs/{run_id}/metrics")
    assert answer.status_code == 200 and answer.json() == expected
    assert list(answer.json()[0]) == ["seq", "kind", "epoch", "step", "payload", "ts"]
    assert isinstance(answer.json()[6]["ts"], float)  # an int ts in the payload is a float column
    page = client.get(f"/api/runs/{run_id}/metrics", params={"after": 3, "limit": 4}).json()
    assert page == expected[3:7]
    assert client.get("/api/runs/999999/metrics").status_code == 404

    # A payload whose text merely says NaN takes the decoding path and is answered unchanged; a real NaN
    # (SQLite keeps what json.dumps wrote; PostgreSQL's json type refuses it) is answered as null.
    with session_scope() as db_session:
        append_events(db_session, run_id, [("log", {"message": "loss is NaN, stopping", "ts": 5.0})])
    assert client.get(f"/api/runs/{run_id}/metrics", params={"after": 10}).json()[0]["payload"] == {
        "message": "loss is NaN, stopping", "ts": 5.0}
    from app.core.db import get_engine

    if get_engine().dialect.name == "sqlite":
        with session_scope() as db_session:
            append_events(db_session, run_id, [("step", {"loss": float("nan"), "x": [float("inf")], "ts": 6.0})])
        answer = client.get(f"/api/runs/{run_id}/metrics", params={"after": 11})
        assert answer.status_code == 200 and answer.json()[0]["payload"] == {"loss": None, "x": [None], "ts": 6.0}


def test_per_kind_reads_use_the_run_kind_seq_index(data_dir):
    """The plan for compare's epoch curves and the latest step row goes through ix_run_events_run_kind_seq
    (not the (kind, id) index, which walks every run's rows of that kind). PostgreSQL is told not to scan
    the (empty) table, as it would not on a big one."""
    from app.core.db import get_engine

    queries = [
        "SELECT run_id, payload FROM run_events WHERE run_id IN (1, 2, 3) AND kind = 'epoch' ORDER BY run_id, seq",
        "SELECT * FROM run_events WHERE run_id = 1 AND kind = 'step' ORDER BY seq DESC LIMIT 1",
    ]
    engine = get_engine()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if not sqlite:
            connection.exec_driver_sql("SET enable_seqscan = off")
        for query in queries:
            plan = " ".join(str(row[-1]) for row in connection.execute(
                text(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + query)))
            assert "ix_run_events_run_kind_seq" in plan, (query, plan)


def test_migration_0008_goes_down_and_up(data_dir):
    """0008 adds the (run_id, kind, seq) index and drops (kind, id) (plain CREATE/DROP INDEX); its
    downgrade puts them back as they were."""
    from alembic.config import Config
    from sqlalchemy import inspect

    from alembic import command
    from app.core.config import get_settings
    from app.core.db import ROOT_DIR, get_engine

    config = Config(str(ROOT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT_DIR / "alembic"))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))

    def indexes() -> set[str]:
        return {index["name"] for index in inspect(get_engine()).get_indexes("run_events")}

    run_id = _new_run()
    assert "ix_run_events_run_kind_seq" in indexes() and "ix_run_events_kind_id" not in indexes()
    command.downgrade(config, "0007")
    assert "ix_run_events_run_kind_seq" not in indexes() and "ix_run_events_kind_id" in indexes()
    command.upgrade(config, "head")
    assert "ix_run_events_run_kind_seq" in indexes() and "ix_run_events_kind_id" not in indexes()
    assert [seq for seq, *_ in _rows(run_id)] == [1]  # the rows were kept throughout
