"""Server-Sent Events: one shared poller per run (or for all runs' status changes).

Every subscriber of a run reads from its poller's in-memory buffer, so 500 open tabs on one
run cost one database query per poll interval, not 500. A subscriber that asks for history
older than the buffer reads it once from the database with its own short session. No stream
ever holds a database session open; each read runs in a worker thread.

The SSE framing, the heartbeat (a comment every `heartbeat_s`) and ending a stream when its client
goes away are sse-starlette's (`EventSourceResponse`); this module decides what to send.
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
from sqlalchemy import func, or_, select
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.core.db import session_scope
from app.core.deps import DB_INT_MAX
from app.core.errors import InvalidInput
from app.runs.events import step_row
from app.runs.models import RUNNING, TERMINAL_STATUSES, Run, RunEvent

BUFFER_SIZE = 5000
HISTORY_BATCH = 2000
IDLE_STOP_S = 30.0
RECENT_ON_CONNECT = 50  # status changes whose rows a freshly opened dashboard stream sends again
SSE_KIND = {"step": "metric"}


@dataclass(frozen=True)
class StreamEvent:
    id: int  # the run's seq (per-run streams) or the status event's feed_id (the all-runs stream)
    kind: str
    data: dict[str, Any]

    def sse(self) -> ServerSentEvent:
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return ServerSentEvent(payload, id=str(self.id), event=SSE_KIND.get(self.kind, self.kind), sep="\n")


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

    def stopped(self) -> bool:
        """True before the first start and after an idle stop."""
        return self._task is None or self._task.done()

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
        # The condition lets the planner read max() from the partial index (one entry, not a scan).
        return db_session.scalar(select(func.max(RunEvent.feed_id)).where(RunEvent.feed_id.is_not(None))) or 0


RenderRows = Callable[[list[int]], dict[int, str]]  # run ids → their rendered dashboard rows


@dataclass
class RowChanges:
    """The fetch of the dashboard's shared row poller: runs whose row would look different now.

    Every poll it reads the status feed past its own cursor (so a run that just reached a terminal
    status is seen) and the state of every unfinished run (progress, accuracies, and for a running run
    the second of its latest step event, so a long epoch's bar and ETA move); a run whose state
    differs from what was last sent is rendered once for all subscribers. Events are full rows, so
    the latest one of a run is all a subscriber needs.
    """

    render: RenderRows
    feed_cursor: int
    number: int = 0  # the last row event's id (the poller's cursor)
    known: dict[int, tuple] | None = None

    def fetch(self, _after: int, _limit: int) -> list[StreamEvent]:
        self.known = {} if self.known is None else self.known
        feed_cursor, changed, new, states = _row_states(self.feed_cursor, unfinished=True)
        differing = sorted(run_id for run_id, state in states.items() if self.known.get(run_id) != state)
        rows = self.render(differing) if differing else {}
        events = []
        for run_id in differing:
            if run_id not in rows:
                continue
            self.number += 1
            events.append(StreamEvent(self.number, "row", {"run_id": run_id, "html": rows[run_id],
                                                           "new": run_id in new, "feed": feed_cursor}))
            if states[run_id][0] in TERMINAL_STATUSES:
                self.known.pop(run_id, None)  # nothing changes a finished row until it is resumed
            else:
                self.known[run_id] = states[run_id]
        self.feed_cursor = feed_cursor
        return events


_ROW_COLUMNS = (Run.id, Run.status, Run.epoch, Run.epochs_total, Run.best_val_accuracy, Run.test_accuracy,
                Run.total_params, Run.failure_reason, Run.name)


def _row_states(after_feed: int, unfinished: bool) -> tuple[int, set[int], set[int], dict[int, tuple]]:
    """(the feed cursor now, runs with status events after `after_feed`, which of them are new,
    the row state of those runs and, with `unfinished`, of every run not yet finished)."""
    with session_scope(write=False) as db_session:
        feed = db_session.execute(
            select(RunEvent.feed_id, RunEvent.run_id, RunEvent.seq).where(RunEvent.feed_id > after_feed)
            .order_by(RunEvent.feed_id).limit(HISTORY_BATCH)
        ).all()
        changed = {run_id for _, run_id, _ in feed}
        new = {run_id for _, run_id, seq in feed if seq == 1}  # a run's first event: it was just created
        where = Run.id.in_(changed)
        if unfinished:
            where = or_(where, Run.status.not_in(TERMINAL_STATUSES))
        states = {row[0]: tuple(row[1:]) for row in db_session.execute(select(*_ROW_COLUMNS).where(where))}
        for run_id, state in states.items():
            if state[0] == RUNNING:  # its place in the epoch under way: a new row at most once a second
                step = step_row(db_session, run_id)
                states[run_id] = (*state, (step.epoch, int(step.ts)) if step is not None else None)
    return (feed[-1][0] if feed else after_feed), changed, new, states


class RowPoller(Poller):
    """A poller of full rows: a subscriber that fell behind the buffer gets each run's latest row."""

    async def after(self, cursor: int) -> list[StreamEvent]:
        batch = self.since(cursor)
        if batch is None:
            latest = {event.data["run_id"]: event for event in self.buffer}
            batch = sorted(latest.values(), key=lambda event: event.id)
        return batch


class StreamHub:
    """Owns the pollers of one web process (kept on app.state)."""

    def __init__(self, poll_interval: float, heartbeat_s: float):
        self.poll_interval = poll_interval
        self.heartbeat_s = heartbeat_s
        self.pollers: dict[int | str, Poller] = {}

    def response(self, events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
        """The SSE response: sse-starlette frames the events, sends the heartbeat comment while the
        stream is quiet and ends the generator (and its subscription) when the client goes away."""
        return EventSourceResponse(events, ping=self.heartbeat_s, sep="\n",
                                   ping_message_factory=lambda: ServerSentEvent(comment="heartbeat", sep="\n"))

    async def poller_for_run(self, run_id: int) -> Poller:
        """The run's shared poller. A new one starts from the run's latest seq, not from seq 1: the run
        page draws the history from a snapshot (app/runs/series.py) and follows only what comes after
        it, and a subscriber with an older cursor reads that history from the database itself."""
        poller = self.pollers.get(run_id)
        if poller is None:
            start = await anyio.to_thread.run_sync(_last_seq, run_id)
            poller = self.pollers.setdefault(run_id, Poller(_run_fetch(run_id), start_cursor=start,
                                                            interval=self.poll_interval))
        poller.ensure_running()
        return poller

    def kick(self, run_id: int) -> None:
        for key in (run_id, "all", "rows"):
            if key in self.pollers:
                self.pollers[key].kick()

    async def run_events(self, run_id: int, after: int) -> AsyncIterator[ServerSentEvent]:
        """One run's events: history after `after` (its seq), then live events, then `end`."""
        poller = await self.poller_for_run(run_id)

        async def finished() -> bool:
            return await anyio.to_thread.run_sync(_is_finished, run_id)

        # A finished run followed from its last seq (the run page after its snapshot) ends at once.
        status, last_seq = await anyio.to_thread.run_sync(_status_and_last_seq, run_id)
        ended = status if status in TERMINAL_STATUSES and after >= last_seq else None
        async for event in self._follow(poller, after, finished, ended):
            yield event

    async def status_events(self, after: int | None) -> AsyncIterator[ServerSentEvent]:
        """Status changes of all runs, by feed id (numbered in commit order: see app/runs/events.py)."""
        poller = self.pollers.get("all")
        if poller is None:
            start = await anyio.to_thread.run_sync(latest_feed_id)
            poller = self.pollers.setdefault("all", Poller(status_fetch, start, self.poll_interval))
        poller.ensure_running()
        async for event in self._follow(poller, poller.cursor if after is None else after):
            yield event

    async def dashboard_rows(self, after_feed: int | None, render: RenderRows,
                             newest_shown: int = 0) -> AsyncIterator[ServerSentEvent]:
        """The runs dashboard: a `row-<id>` event with the rendered row whenever a run's row changes
        (status, progress, accuracies), and `run-new` when a run was created (the table refreshes).

        The stream first sends the rows of unfinished runs and of runs whose status changed after
        `after_feed` (the last event id on a reconnect; for a fresh page, the last RECENT_ON_CONNECT
        status changes, which covers what changed while the page loaded), then follows the shared
        row poller. Each event's id is the feed id it is current to. A fresh page reports runs
        created in that window as new only above `newest_shown`, the newest run id it lists.
        """
        poller = self.pollers.get("rows")
        if poller is None or poller.stopped():  # after an idle stop, start from now, not from then
            start = await anyio.to_thread.run_sync(latest_feed_id)
            if self.pollers.get("rows") is poller:  # no other subscriber replaced it meanwhile
                changes = RowChanges(render, feed_cursor=start)
                self.pollers["rows"] = RowPoller(changes.fetch, 0, self.poll_interval)
            poller = self.pollers["rows"]
        poller.ensure_running()
        cursor = poller.cursor
        poller.subscribers += 1  # from here on nothing the poller reads is lost to this stream
        try:
            yield ServerSentEvent(retry=1000, sep="\n")
            fresh = after_feed is None
            if fresh:  # also the runs that changed while the page loaded
                after_feed = max(await anyio.to_thread.run_sync(latest_feed_id) - RECENT_ON_CONNECT, 0)

            def first_rows() -> tuple[int, set[int], dict[int, str]]:
                feed_cursor, _, new, states = _row_states(after_feed, unfinished=True)
                return feed_cursor, new, render(sorted(states))

            feed_cursor, new, rows = await anyio.to_thread.run_sync(first_rows)
            if fresh:
                new = {run_id for run_id in new if run_id > newest_shown}
            for run_id, html in rows.items():
                yield _row_event(run_id, html, feed_cursor)
            if new:
                yield ServerSentEvent(json.dumps(sorted(new)), id=str(feed_cursor), event="run-new", sep="\n")
            while True:
                batch = await poller.after(cursor)
                for event in batch:
                    yield _row_event(event.data["run_id"], event.data["html"], event.data["feed"])
                    if event.data["new"]:
                        yield ServerSentEvent(json.dumps([event.data["run_id"]]), id=str(event.data["feed"]), event="run-new",
                                              sep="\n")
                    cursor = event.id
                if not batch:
                    await poller.wait_beyond(cursor, self.heartbeat_s)
        finally:
            poller.subscribers -= 1

    async def _follow(self, poller: Poller, cursor: int, finished: Callable | None = None,
                      ended: str | None = None) -> AsyncIterator[ServerSentEvent]:
        """Events after `cursor`, then live ones, as they arrive.

        With `finished`, a terminal status ends the stream (`event: end`) only if it is the run's
        latest word: a cancelled run that was resumed later has more history after it. `ended`: the
        terminal status the run already had at `cursor`, for a stream that starts after it.
        """
        poller.subscribers += 1
        try:
            yield ServerSentEvent(retry=1000, sep="\n")
            ended_with: str | None = ended
            while True:
                batch = await poller.after(cursor)
                for event in batch:
                    yield event.sse()
                    cursor = event.id
                    ended_with = event.data.get("status") if _is_terminal(event) else None
                if batch:
                    continue
                if finished is not None and ended_with is not None and await finished():
                    yield ServerSentEvent(json.dumps({"status": ended_with}), event="end", sep="\n")
                    return
                await poller.wait_beyond(cursor, self.heartbeat_s)
        finally:
            poller.subscribers -= 1


def _row_event(run_id: int, html: str, feed_cursor: int) -> ServerSentEvent:
    return ServerSentEvent(html, id=str(feed_cursor), event=f"row-{run_id}", sep="\n")


def _last_seq(run_id: int) -> int:
    return _status_and_last_seq(run_id)[1]


def _status_and_last_seq(run_id: int) -> tuple[str | None, int]:
    with session_scope(write=False) as db_session:
        row = db_session.execute(select(Run.status, Run.last_seq).where(Run.id == run_id)).first()
    return (row[0], row[1] or 0) if row is not None else (None, 0)


def _is_finished(run_id: int) -> bool:
    with session_scope(write=False) as db_session:
        return db_session.scalar(select(Run.status).where(Run.id == run_id)) in TERMINAL_STATUSES


def resume_cursor(request: Any, after: int | None) -> int | None:
    """Where a stream resumes: the later of `?after=` and the Last-Event-ID header (an EventSource
    that reconnects by itself sends the header but keeps the URL it was opened with); None if neither."""
    header = request.headers.get("last-event-id", "").strip()
    if header and not (header.isdigit() and len(header) <= 19 and int(header) <= DB_INT_MAX):
        raise InvalidInput(f"Last-Event-ID must be an event id (a whole number up to {DB_INT_MAX})",
                           [{"field": "Last-Event-ID", "message": "not an event id"}])
    candidates = [c for c in (after, int(header) if header else None) if c is not None]
    return max(candidates) if candidates else None


def run_exists(run_id: int) -> bool:
    with session_scope(write=False) as db_session:
        return db_session.get(Run, run_id) is not None
