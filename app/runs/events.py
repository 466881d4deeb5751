"""Appending run events with gap-free per-run `seq`, shared by trainers, executors and the API.

Status events also get a place in the all-runs feed (`feed_id`, /api/events). Row ids cannot be the
feed's cursor: PostgreSQL takes them from a sequence at insert time and transactions commit in any
order, so a reader could pass a row that commits late and never see it. Feed numbers are taken from
the one-row `feed_counter` as the last write before COMMIT: its row lock makes the next writer wait
until this one has committed, so feed numbers become visible in order. Taking it last also means a
transaction holding the counter waits for no other lock (no deadlock with run rows), and holds it
only for the commit. Status events are rare, so the serialisation costs nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from app.runs.models import FeedCounter, Run, RunEvent

_FEED_PENDING = "trainboard.feed_pending"  # session.info key: status events still without a feed id


# Rows per INSERT statement (an executemany): bounds the parameter lists a big batch builds at once.
INSERT_CHUNK_ROWS = 1000


_INSERT_COLUMNS = ("run_id", "seq", "kind", "epoch", "step", "payload", "ts", "trainer_seq",
                   "loss", "accuracy", "progress")


# COPY's binary format for the columns above: no text parsing of numbers on the server (~10% of COPY).
_COPY_TYPES = ("int4", "int4", "text", "int4", "int4", "text", "float8", "int4",  # json: its text as is
               "float8", "float8", "float8")


def _insert_rows(connection: Any, rows: list[tuple[Any, ...]]) -> None:
    """The driver's own bulk INSERT of event rows, no SQLAlchemy parameter processing per row (it cost as
    much as SQLite's insert itself); the payload is the JSON text the JSON column type would have written,
    so readers decode it the same. SQLite (in-process): executemany of one-row statements; PostgreSQL:
    binary COPY in the transaction's own connection (3-4x a multi-row VALUES statement)."""
    if connection.dialect.driver == "psycopg":
        sql = f"COPY run_events ({', '.join(_INSERT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with connection.connection.dbapi_connection.cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        return
    head = f"INSERT INTO run_events ({', '.join(_INSERT_COLUMNS)}) VALUES "
    if connection.dialect.paramstyle == "qmark":
        connection.exec_driver_sql(head + "(" + ", ".join(["?"] * len(_INSERT_COLUMNS)) + ")", rows)
        return
    one = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"  # another driver: multi-row VALUES
    connection.exec_driver_sql(head + ", ".join([one] * len(rows)), tuple(value for row in rows for value in row))


def _number(value: Any) -> float | None:
    """A finite number as a float for a metric column; anything else (absent, text, NaN, ±inf) None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def dumps(payload: dict[str, Any]) -> str:
    """A payload as JSON text: orjson (10x json.dumps, most of a metric row's cost), with NaN and ±inf written
    as null (JSON has no such numbers, and PostgreSQL's json type refuses them); json.dumps for what orjson
    does not take."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(payload, default=str)


def append_events(db_session: Session, run_id: int, events: Iterable[tuple[str, dict[str, Any]]],
                  first_trainer_seq: int | None = None) -> int:
    """Insert events for one run and return the last seq; call inside the caller's transaction.

    The seq block is reserved by bumping `runs.last_seq` in the same transaction, so two writers
    (a trainer and the reaper, say) never collide and a committed run has no gaps. Rows go in with
    the driver's own bulk INSERT (COPY on PostgreSQL), no ORM object per row; status events are
    ORM objects (rare) because their feed number is written at commit. `first_trainer_seq` numbers the
    rows with the ingest API's trainer seqs, consecutive from it.
    """
    events = list(events)
    if not events:
        return 0
    last_seq = db_session.execute(
        update(Run).where(Run.id == run_id).values(last_seq=Run.last_seq + len(events))
        .returning(Run.last_seq)
    ).scalar_one()
    first = last_seq - len(events) + 1
    now = time.time()
    rows: list[tuple[Any, ...]] = []
    statuses: list[RunEvent] = []
    for offset, (kind, payload) in enumerate(events):
        seq, trainer_seq = first + offset, None if first_trainer_seq is None else first_trainer_seq + offset
        ts = float(payload.get("ts", now))
        if kind == "status":
            statuses.append(RunEvent(run_id=run_id, seq=seq, kind=kind, epoch=payload.get("epoch"),
                                     step=payload.get("step"), payload=payload, ts=ts, trainer_seq=trainer_seq))
        else:
            if kind == "step":
                values = (_number(payload.get("loss")), _number(payload.get("accuracy")),
                          _number(payload.get("epoch_progress")))
            else:
                values = (None, None, None)
            rows.append((run_id, seq, kind, payload.get("epoch"), payload.get("step"), dumps(payload), ts,
                         trainer_seq, *values))
    if rows:
        connection = db_session.connection()
        chunk = len(rows) if connection.dialect.driver == "psycopg" else INSERT_CHUNK_ROWS  # COPY streams
        for start in range(0, len(rows), chunk):
            _insert_rows(connection, rows[start:start + chunk])
    if statuses:  # numbered when the transaction commits (_number_feed_events)
        db_session.add_all(statuses)
        db_session.info.setdefault(_FEED_PENDING, []).extend(statuses)
    return last_seq


@event.listens_for(Session, "before_commit")
def _number_feed_events(db_session: Session) -> None:
    """Give this transaction's status events their feed numbers, as its last write before COMMIT."""
    pending = db_session.info.pop(_FEED_PENDING, None)
    if not pending:
        return
    db_session.flush()  # every other write (and its row locks) first: the counter is taken last
    last = db_session.execute(
        update(FeedCounter).where(FeedCounter.id == 1).values(value=FeedCounter.value + len(pending))
        .returning(FeedCounter.value)
    ).scalar_one()
    for offset, row in enumerate(pending):
        row.feed_id = last - len(pending) + 1 + offset  # written by the commit's own flush


@event.listens_for(Session, "after_transaction_end")
def _forget_feed_events(db_session: Session, transaction) -> None:
    if transaction.parent is None:  # rolled back or closed without a commit: those rows are gone
        db_session.info.pop(_FEED_PENDING, None)


def events_after(db_session: Session, run_id: int, after: int, limit: int = 1000) -> list[RunEvent]:
    """Events with seq > after, oldest first."""
    return list(
        db_session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > after)
            .order_by(RunEvent.seq).limit(limit)
        )
    )


def step_row(db_session: Session, run_id: int) -> RunEvent | None:
    """A run's latest step event (its progress inside the epoch under way), or None. Reads the
    (run_id, seq) index backwards: the newest rows of a training run are its step events."""
    return db_session.scalars(
        select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == "step").order_by(RunEvent.seq.desc()).limit(1)
    ).first()
