"""Server-Sent Events: one shared poller per run (or for all runs' status changes).

Every subscriber of a run reads from its poller's in-memory buffer, so 500 open tabs on one
run cost one database query per poll interval, not 500. A subscriber that asks for history
older than the buffer reads it once from the database with its own short session. No stream
ever holds a database session open; each read runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import func, select

from app.core.db import session_scope
from app.runs.models import TERMINAL_STATUSES, Run, RunEvent

BUFFER_SIZE = 5000
HISTORY_BATCH = 2000
IDLE_STOP_S = 30.0
SSE_KIND = {"step": "metric"}


@dataclass(frozen=True)
class StreamEvent:
    id: int  # the run's seq (per-run streams) or the status event's feed_id (the all-runs stream)
    kind: str
    data: dict[str, Any]

    def encode(self) -> str:
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {SSE_KIND.get(self.kind, self.kind)}\ndata: {payload}\n\n"


def _is_terminal(event: StreamEvent) -> bool:
    return event.kind == "status" and event.data.get("status") in TERMINAL_STATUSES


class Poller:
    """Reads new rows for one key every interval while anyone listens; fans them out."""

    def __init__(self, fetch: Callable[[int, int], list[StreamEvent]], start_cursor: int, interval: float):
        self.fetch = fetch
        self.interval = interval
        self.cursor = start_cursor  # the last id read from the database
        self.buffer: deque[StreamEvent] = deque(maxlen=BUFFER_SIZE)
        self.base = start_cursor  # ids <= base are not in the buffer (read them from the database)
        self.subscribers = 0
        self.polls = 0
        self.finished = False  # a terminal status was seen (per-run pollers)
        # Set (and replaced by a fresh one) whenever new events arrive. A plain Event, not a
        # Condition: asyncio.wait_for on Condition.wait can leave the lock released on timeout or
        # cancellation in Python 3.11 ("Lock is not acquired"), which broke streams under load.
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._idle_since: float | None = None
        self._kick = asyncio.Event()

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def kick(self) -> None:
        """A wake-up hint: poll now instead of at the end of the interval."""
        self._kick.set()

    async def _run(self) -> None:
        while True:
            if self.subscribers == 0:
                self._idle_since = self._idle_since or time.monotonic()
                if time.monotonic() - self._idle_since > IDLE_STOP_S:
                    return
            else:
                self._idle_since = None
                await self._poll_once()
            try:
                await asyncio.wait_for(self._kick.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()

    async def _poll_once(self) -> None:
        self.polls += 1
        try:
            events = await anyio.to_thread.run_sync(self.fetch, self.cursor, HISTORY_BATCH)
        except Exception:  # the database is busy or restarting: try again next interval
            return
        if not events:
            return
        self.buffer.extend(events)
        if len(self.buffer) == self.buffer.maxlen:  # the oldest fell out: older cursors read the database
            self.base = self.buffer[0].id - 1
        self.cursor = events[-1].id
        self.finished = self.finished or any(_is_terminal(e) for e in events)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def since(self, cursor: int) -> list[StreamEvent] | None:
        """Buffered events after `cursor`, or None when the cursor is older than the buffer."""
        if cursor < self.base:
            return None
        return [e for e in self.buffer if e.id > cursor] if self.buffer and self.buffer[-1].id > cursor else []

    async def after(self, cursor: int) -> list[StreamEvent]:
        """Events after `cursor`: from the buffer, or (older than it) read by this subscriber alone."""
        batch = self.since(cursor)
        if batch is None:
            batch = await anyio.to_thread.run_sync(self.fetch, cursor, HISTORY_BATCH)
        return batch

    async def wait_beyond(self, cursor: int, timeout: float) -> bool:
        """Wait until something newer than `cursor` arrives; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.cursor <= cursor:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True


def _run_fetch(run_id: int) -> Callable[[int, int], list[StreamEvent]]:
    def fetch(after: int, limit: int) -> list[StreamEvent]:
        with session_scope(write=False) as db_session:
            rows = db_session.execute(
                select(RunEvent.seq, RunEvent.kind, RunEvent.payload)
                .where(RunEvent.run_id == run_id, RunEvent.seq > after).order_by(RunEvent.seq).limit(limit)
            ).all()
        return [StreamEvent(seq, kind, payload) for seq, kind, payload in rows]

    return fetch


def status_fetch(after: int, limit: int) -> list[StreamEvent]:
    """Status events of all runs with feed_id > after, in feed order (numbered in commit order, so
    a reader that moves its cursor past a number never meets a smaller one later)."""
    with session_scope(write=False) as db_session:
        rows = db_session.execute(
            select(RunEvent.feed_id, RunEvent.run_id, RunEvent.seq, RunEvent.payload)
            .where(RunEvent.feed_id > after).order_by(RunEvent.feed_id).limit(limit)
        ).all()
    return [StreamEvent(feed_id, "status", {**payload, "run_id": run_id, "seq": seq})
            for feed_id, run_id, seq, payload in rows]


def latest_feed_id() -> int:
    with session_scope(write=False) as db_session:
        return db_session.scalar(select(func.max(RunEvent.feed_id))) or 0


class StreamHub:
    """Owns the pollers of one web process (kept on app.state)."""

    def __init__(self, poll_interval: float, heartbeat_s: float):
        self.poll_interval = poll_interval
        self.heartbeat_s = heartbeat_s
        self.pollers: dict[int | str, Poller] = {}

    def poller_for_run(self, run_id: int) -> Poller:
        poller = self.pollers.get(run_id)
        if poller is None:
            poller = Poller(_run_fetch(run_id), start_cursor=0, interval=self.poll_interval)
            self.pollers[run_id] = poller
        poller.ensure_running()
        return poller

    def kick(self, run_id: int) -> None:
        for key in (run_id, "all"):
            if key in self.pollers:
                self.pollers[key].kick()

    async def run_events(self, run_id: int, after: int, is_disconnected: Callable) -> AsyncIterator[str]:
        """The SSE body for one run: history after `after`, then live events, then `end`."""
        poller = self.poller_for_run(run_id)

        async def finished() -> bool:
            return await anyio.to_thread.run_sync(_is_finished, run_id)

        async for chunk in self._follow(poller, after, is_disconnected, finished):
            yield chunk

    async def status_events(self, after: int | None, is_disconnected: Callable) -> AsyncIterator[str]:
        """Status changes of all runs (for the runs list)."""
        poller = self.pollers.get("all")
        if poller is None:
            start = await anyio.to_thread.run_sync(latest_feed_id)
            poller = self.pollers.setdefault("all", Poller(status_fetch, start, self.poll_interval))
        poller.ensure_running()
        async for chunk in self._follow(poller, poller.cursor if after is None else after, is_disconnected):
            yield chunk

    async def _follow(self, poller: Poller, cursor: int, is_disconnected: Callable,
                      finished: Callable | None = None) -> AsyncIterator[str]:
        """Events after `cursor` as SSE text, then live ones; heartbeats while idle.

        With `finished`, a terminal status ends the stream (`event: end`) only if it is the run's
        latest word: a cancelled run that was resumed later has more history after it.
        """
        poller.subscribers += 1
        try:
            yield "retry: 1000\n\n"
            ended_with: str | None = None
            while True:
                batch = await poller.after(cursor)
                for event in batch:
                    yield event.encode()
                    cursor = event.id
                    ended_with = event.data.get("status") if _is_terminal(event) else None
                if batch:
                    continue
                if finished is not None and ended_with is not None and await finished():
                    yield f"event: end\ndata: {json.dumps({'status': ended_with})}\n\n"
                    return
                if await is_disconnected():
                    return
                if not await poller.wait_beyond(cursor, self.heartbeat_s):
                    yield ": heartbeat\n\n"
        finally:
            poller.subscribers -= 1


def _is_finished(run_id: int) -> bool:
    with session_scope(write=False) as db_session:
        return db_session.scalar(select(Run.status).where(Run.id == run_id)) in TERMINAL_STATUSES


def run_exists(run_id: int) -> bool:
    with session_scope(write=False) as db_session:
        return db_session.get(Run, run_id) is not None
