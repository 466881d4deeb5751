"""A sweep's live view over SSE: the whole view again whenever one of its trials changed.

A sweep has a few dozen trials at most, so each change sends everything (the page swaps its body in,
the CLI redraws its table). Each subscriber polls a cheap fingerprint (its trials' statuses and
epochs) every poll interval in a worker thread; no database session stays open between polls.
The stream ends with `end` once the sweep is completed or cancelled and its trials have all ended.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sqlalchemy import func, select
from sse_starlette import ServerSentEvent

from app.core.db import session_scope
from app.runs.models import Run, Sweep


def fingerprint(sweep_id: int) -> tuple:
    """What the view depends on: the sweep's status and each trial's status and epoch (not its steps:
    the page changes once an epoch, so a field being typed in is not swapped away every poll)."""
    with session_scope(write=False) as db_session:
        status = db_session.scalar(select(Sweep.status).where(Sweep.id == sweep_id))
        rows = db_session.execute(select(Run.id, Run.status, Run.epoch).where(Run.sweep_id == sweep_id)
                                  .order_by(Run.id)).all()
        return status, tuple(tuple(row) for row in rows)


async def follow(sweep_id: int, render: Callable[[], tuple[str, Any]], interval: float,
                 heartbeat_s: float) -> AsyncIterator[ServerSentEvent]:
    """`render()` → (event name, data) in a worker thread on each change; `end` after the last."""
    yield ServerSentEvent(retry=1000, sep="\n")
    last = None
    quiet = 0.0
    while True:
        current = await anyio.to_thread.run_sync(fingerprint, sweep_id)
        if current != last:
            last = current
            name, data = await anyio.to_thread.run_sync(render)
            payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
            yield ServerSentEvent(payload, event=name, sep="\n")
            quiet = 0.0
            if current[0] in ("completed", "cancelled") and _all_ended(sweep_id):
                yield ServerSentEvent(json.dumps({"status": current[0]}), event="end", sep="\n")
                return
        await anyio.sleep(interval)
        quiet += interval
        if quiet >= heartbeat_s:
            quiet = 0.0
            yield ServerSentEvent(comment="heartbeat", sep="\n")


def _all_ended(sweep_id: int) -> bool:
    from app.runs.models import TERMINAL_STATUSES

    with session_scope(write=False) as db_session:
        return db_session.scalar(select(func.count(Run.id)).where(
            Run.sweep_id == sweep_id, Run.status.not_in(TERMINAL_STATUSES))) == 0
