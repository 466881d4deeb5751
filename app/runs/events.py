"""Appending run events with gap-free per-run `seq`, shared by trainers, executors and the API."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.runs.models import Run, RunEvent


def append_events(db_session: Session, run_id: int, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Insert events for one run and return the last seq; call inside the caller's transaction.

    The seq block is reserved by bumping `runs.last_seq` in the same transaction, so two writers
    (a trainer and the reaper, say) never collide and a committed run has no gaps.
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
    db_session.add_all(
        RunEvent(
            run_id=run_id,
            seq=first + offset,
            kind=kind,
            epoch=payload.get("epoch"),
            step=payload.get("step"),
            payload=payload,
            ts=payload.get("ts", now),
        )
        for offset, (kind, payload) in enumerate(events)
    )
    return last_seq


def events_after(db_session: Session, run_id: int, after: int, limit: int = 1000) -> list[RunEvent]:
    """Events with seq > after, oldest first."""
    return list(
        db_session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > after)
            .order_by(RunEvent.seq).limit(limit)
        )
    )
