"""SSE: exact resumption from Last-Event-ID, and one shared database poll per run."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn
from sqlalchemy import event

from tests.conftest import free_port
from tests.runs.helpers import run_in_thread


class ThreadServer:
    """uvicorn in a thread, so the test can look at the app's stream hub."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                limit_concurrency=1000, backlog=1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _make_run(events: int, status: str = "running") -> int:
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import Run

    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status=status)
        db_session.add(run)
        db_session.flush()
        append_events(db_session, run.id, [("status", {"status": "queued"})])
        append_events(db_session, run.id, [("step", {"epoch": 1, "step": i, "loss": 1.0 / (i + 1)})
                                           for i in range(1, events)])
        return run.id


def _append(run_id: int, events: list[tuple[str, dict]]) -> None:
    from app.core.db import session_scope
    from app.runs.events import append_events

    with session_scope() as db_session:
        append_events(db_session, run_id, events)


def _parse(text: str) -> list[dict]:
    out = []
    for block in text.strip().split("\n\n"):
        item = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            item[key] = value
        if "event" in item:
            out.append(item)
    return out


@pytest.fixture
def app(data_dir):
    from app.main import create_app

    return create_app(start_executor=False)


def test_reconnect_with_last_event_id_yields_exactly_the_missed_events(app):
    run_id = _make_run(events=30, status="completed")
    _append(run_id, [("status", {"status": "completed"})])
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        full = _parse(client.get(f"/api/runs/{run_id}/events").text)
        assert [int(e["id"]) for e in full if "id" in e] == list(range(1, 32))
        assert full[-1]["event"] == "end"
        assert full[1]["event"] == "metric" and json.loads(full[1]["data"])["step"] == 1
        resumed = _parse(client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": "17"}).text)
        assert [int(e["id"]) for e in resumed if "id" in e] == list(range(18, 32))
        by_query = _parse(client.get(f"/api/runs/{run_id}/events", params={"after": 29}).text)
        assert [int(e["id"]) for e in by_query if "id" in e] == [30, 31]
        assert client.get("/api/runs/999/events").status_code == 404


async def _subscribe(client: httpx.AsyncClient, url: str, received: dict, key: int, target: int,
                     ready: asyncio.Event, counter: list):
    async with client.stream("GET", url) as response:
        counter[0] += 1
        if counter[0] == len(received):
            ready.set()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                received[key] = int(line[4:])
                if received[key] >= target:
                    return


def test_200_subscribers_cost_one_poll_per_interval(app):
    from app.core.db import get_engine

    subscribers = 200
    run_id = _make_run(events=5)
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if "FROM run_events" in statement:
            statements.append(time.monotonic())

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        with ThreadServer(app) as server:
            url = f"{server.url}/api/runs/{run_id}/events"
            final_seq = 5 + 20

            async def main():
                received = dict.fromkeys(range(subscribers), 0)
                ready, counter = asyncio.Event(), [0]
                limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=0)
                client = httpx.AsyncClient(timeout=120, limits=limits)
                tasks = [asyncio.create_task(_subscribe(client, url, received, k, final_seq, ready, counter))
                         for k in range(subscribers)]
                await asyncio.wait_for(ready.wait(), 120)
                async def first_rows() -> None:
                    while min(received.values()) < 5:
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(first_rows(), 120)
                window_start = time.monotonic()
                for i in range(20):
                    await asyncio.to_thread(_append, run_id, [("step", {"epoch": 1, "step": 100 + i})])
                    await asyncio.sleep(0.05)
                await asyncio.wait_for(asyncio.gather(*tasks), 120)
                window_end = time.monotonic()
                await client.aclose()
                return received, window_start, window_end

            received, start, end = run_in_thread(main)
        assert set(received.values()) == {final_seq}, "every subscriber must get every event"
        interval = app.state.stream_hub.poll_interval
        during = [t for t in statements if start <= t <= end]
        allowed = (end - start) / interval + 3
        assert len(during) <= allowed, f"{len(during)} event queries for {subscribers} subscribers in " \
                                       f"{end - start:.2f}s (one poller allows ~{allowed:.0f})"
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def test_a_resumed_run_streams_past_its_old_terminal_status(app):
    from app.core.db import session_scope
    from app.runs.models import Run

    run_id = _make_run(events=3)
    _append(run_id, [("status", {"status": "cancelled"}), ("status", {"status": "queued"}),
                     ("status", {"status": "running"}), ("step", {"epoch": 2, "step": 9}),
                     ("status", {"status": "completed"})])
    with session_scope() as db_session:
        db_session.get(Run, run_id).status = "completed"
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        events = _parse(client.get(f"/api/runs/{run_id}/events").text)
    assert [int(e["id"]) for e in events if "id" in e] == list(range(1, 9))
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"])["status"] == "completed"


class Subscriber(threading.Thread):
    """Reads one run's stream with httpx-sse and keeps every event id it got, in order."""

    def __init__(self, url: str, last_event_id: int | None = None, stop_after: int | None = None):
        super().__init__(daemon=True)
        self.url, self.last_event_id, self.stop_after = url, last_event_id, stop_after
        self.ids: list[int] = []
        self.ended: str | None = None
        self.error: BaseException | None = None

    def run(self):
        from httpx_sse import connect_sse

        headers = {"Last-Event-ID": str(self.last_event_id)} if self.last_event_id is not None else {}
        try:
            with httpx.Client(timeout=60) as client, connect_sse(client, "GET", self.url, headers=headers) as source:
                for sse in source.iter_sse():
                    if sse.event == "end":
                        self.ended = json.loads(sse.data)["status"]
                        return
                    if sse.retry is not None and not sse.data:
                        continue  # the stream's `retry:` advice
                    self.ids.append(int(sse.id))
                    if self.stop_after is not None and len(self.ids) >= self.stop_after:
                        return  # disconnect in the middle of the run
        except BaseException as exc:  # reported by the test
            self.error = exc


def _wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _write_a_run(run_id: int, batches: int, halfway: threading.Event | None = None,
                 go_on: threading.Event | None = None) -> None:
    """A trainer's writes: metric batches of varying size, an epoch row now and then, then the end.
    With `halfway`/`go_on`, it says when half is written and waits there until the test lets it go on."""
    from app.core.db import session_scope
    from app.runs.models import Run

    for index in range(batches):
        if halfway is not None and index == batches // 2:
            halfway.set()
            assert go_on.wait(60), "the test never let the writer go on"
        events = [("step", {"epoch": 1, "step": index * 10 + k, "loss": 0.5}) for k in range(1 + index % 7)]
        if index % 5 == 4:
            events.append(("epoch", {"epoch": index // 5 + 1, "step": index * 10}))
        _append(run_id, events)
    with session_scope() as db_session:
        from app.runs.events import append_events

        db_session.get(Run, run_id).status = "completed"
        append_events(db_session, run_id, [("status", {"status": "completed"})])


def _last_seq(run_id: int) -> int:
    from app.core.db import session_scope
    from app.runs.models import Run

    with session_scope(write=False) as db_session:
        return db_session.get(Run, run_id).last_seq


def test_concurrent_subscribers_of_a_running_run_each_get_every_seq_exactly_once(app):
    """Several clients read a run while a writer thread commits batches: each client's full list of
    ids is exactly the run's committed seqs 1..N, no gap, no duplicate, then `end`."""
    run_id = _make_run(events=1)
    with ThreadServer(app) as server:
        url = f"{server.url}/api/runs/{run_id}/events"
        subscribers = [Subscriber(url) for _ in range(6)]
        for subscriber in subscribers:
            subscriber.start()
        _wait_until(lambda: all(s.ids or s.error for s in subscribers), "every subscriber's first event")
        halfway, go_on = threading.Event(), threading.Event()
        writer = threading.Thread(target=_write_a_run, args=(run_id, 60, halfway, go_on))
        writer.start()
        assert halfway.wait(60)
        late = Subscriber(url)  # joins in the middle of the run: history, then live
        late.start()
        _wait_until(lambda: len(late.ids) >= _last_seq(run_id) or late.error, "the late subscriber's history")
        go_on.set()
        writer.join(60)
        for subscriber in [*subscribers, late]:
            subscriber.join(60)
    final = _last_seq(run_id)
    assert final > 200
    for subscriber in [*subscribers, late]:
        assert subscriber.error is None, subscriber.error
        assert subscriber.ids == list(range(1, final + 1))
        assert subscriber.ended == "completed"


def test_resume_with_last_event_id_in_the_middle_of_a_running_run(app):
    """Connect, read some, disconnect while the run writes on, reconnect with the last id seen:
    the two halves together are exactly 1..N."""
    run_id = _make_run(events=1)
    with ThreadServer(app) as server:
        url = f"{server.url}/api/runs/{run_id}/events"
        halfway, go_on = threading.Event(), threading.Event()
        writer = threading.Thread(target=_write_a_run, args=(run_id, 80, halfway, go_on))
        first = Subscriber(url, stop_after=40)
        first.start()
        writer.start()
        first.join(60)
        assert first.error is None and len(first.ids) == 40
        assert halfway.wait(60)  # the run writes on while nobody listens, up to its middle
        assert _last_seq(run_id) > first.ids[-1]
        second = Subscriber(url, last_event_id=first.ids[-1])
        second.start()
        _wait_until(lambda: second.ids or second.error, "the resumed stream's first event")
        go_on.set()  # and goes on while the resumed stream reads
        writer.join(60)
        second.join(60)
    assert second.error is None, second.error
    final = _last_seq(run_id)
    assert first.ids + second.ids == list(range(1, final + 1))
    assert second.ended == "completed"


def test_a_fresh_run_page_streams_from_its_snapshot_not_from_the_history(app):
    """The run page draws its history from a downsampled snapshot (/series) and then follows the stream
    from the snapshot's last seq: it gets only what comes after, and the run's new shared poller starts
    there too instead of reading the whole history."""
    from app.core.db import get_engine

    run_id = _make_run(events=3000)
    read = []

    def count(_conn, _cursor, statement, parameters, *_args):
        if "FROM run_events" in statement and "run_events.seq >" in statement:
            read.append(tuple(parameters.values()) if isinstance(parameters, dict) else tuple(parameters))

    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        snapshot = client.get(f"/api/runs/{run_id}/series", params={"points": 500, "events": 400}).json()
        assert snapshot["last_seq"] == 3000 and snapshot["downsampled"] is True
        assert len(snapshot["steps"]["step"]) <= 1000
        event.listen(get_engine(), "before_cursor_execute", count)
        try:
            page = Subscriber(f"{server.url}/api/runs/{run_id}/events?after={snapshot['last_seq']}")
            page.start()
            _wait_until(lambda: run_id in app.state.stream_hub.pollers, "the run's poller")
            assert app.state.stream_hub.pollers[run_id].base == 3000  # a new poller starts from now
            _append(run_id, [("step", {"epoch": 1, "step": 5000 + i}) for i in range(3)])
            _append(run_id, [("status", {"status": "completed"})])
            _set_status(run_id, "completed")
            page.join(30)
        finally:
            event.remove(get_engine(), "before_cursor_execute", count)
    assert page.error is None, page.error
    assert page.ids == [3001, 3002, 3003, 3004] and page.ended == "completed"
    assert read and all(params[1] >= 3000 for params in read), read  # (run_id, after, limit): never the history
    # Opened again after the run finished: the stream from the snapshot on ends at once.
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        again = _parse(client.get(f"/api/runs/{run_id}/events", params={"after": 3004}).text)
    assert [(e["event"], e.get("id")) for e in again] == [("end", None)] and json.loads(again[0]["data"]) == {
        "status": "completed"}


def _set_status(run_id: int, status: str) -> None:
    from app.core.db import session_scope
    from app.runs.models import Run

    with session_scope() as db_session:
        db_session.get(Run, run_id).status = status


class DashboardReader(threading.Thread):
    """Reads /stream/runs and keeps (event, id, data) of everything it got."""

    def __init__(self, url: str, last_event_id: str | None = None):
        super().__init__(daemon=True)
        self.url, self.last_event_id = url, last_event_id
        self.events: list[tuple[str, str, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        from httpx_sse import connect_sse

        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        try:
            with httpx.Client(timeout=60) as client, connect_sse(client, "GET", self.url, headers=headers) as source:
                for sse in source.iter_sse():
                    if sse.data:
                        self.events.append((sse.event, sse.id, sse.data))
                    if self.stop.is_set():
                        return
        except BaseException as exc:
            self.error = exc

    def wait_for(self, predicate, what: str) -> tuple[str, str, str]:
        found: list = []

        def seen():
            found[:] = [e for e in self.events if predicate(e)]
            return bool(found) or self.error is not None

        _wait_until(seen, what)
        assert self.error is None, self.error
        return found[-1]


def test_dashboard_stream_sends_changed_rows_and_new_runs(app):
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import Run

    old = _make_run(events=1, status="completed")
    running = _make_run(events=1)
    with session_scope() as db_session:
        db_session.get(Run, running).epochs_total = 3
    with ThreadServer(app) as server:
        reader = DashboardReader(f"{server.url}/stream/runs?newest={running}")
        reader.start()
        # On connect: the unfinished run's row (and the finished one, which changed just now).
        event, _, html = reader.wait_for(lambda e: e[0] == f"row-{running}", "the running run's row")
        assert html.startswith(f'<tr id="run-row-{running}"') and "epoch 0 of 3" in html
        assert f'sse-swap="row-{running}"' in html

        with session_scope() as db_session:  # progress: no status event, the row changes all the same
            db_session.get(Run, running).epoch = 1
        reader.wait_for(lambda e: e[0] == f"row-{running}" and "epoch 1 of 3" in e[2], "the progress")

        created = _make_run(events=1)
        reader.wait_for(lambda e: e[0] == "run-new", "the new run")
        assert [json.loads(e[2]) for e in reader.events if e[0] == "run-new"] == [[created]]
        reader.wait_for(lambda e: e[0] == f"row-{created}", "the new run's row")

        with session_scope() as db_session:
            db_session.get(Run, running).status = "completed"
            db_session.get(Run, running).epoch = 3
            append_events(db_session, running, [("status", {"status": "completed"})])
        _, last_id, html = reader.wait_for(lambda e: e[0] == f"row-{running}" and "completed" in e[2],
                                           "the finished row")
        assert "epoch 3 of 3" in html
        reader.stop.set()

        # A reconnect after the last id gets the unfinished runs' rows, not the unchanged finished ones.
        again = DashboardReader(f"{server.url}/stream/runs", last_event_id=last_id)
        again.start()
        again.wait_for(lambda e: e[0] == f"row-{created}", "the unfinished run's row")
        again.stop.set()
        _make_run(events=1)  # something to read, so both readers notice they should stop
        reader.join(30)
        again.join(30)
    assert not any(e[0] in (f"row-{running}", f"row-{old}") for e in again.events)


def test_a_dashboard_row_moves_inside_a_long_epoch(app):
    """Before its first epoch ends a running run's row shows the step of the epoch and an ETA from that
    epoch's pace, and moves on with the next step event: no epoch needs to finish first."""
    from app.core.db import session_scope
    from app.runs.models import Run

    running = _make_run(events=1)
    with session_scope() as db_session:
        db_session.get(Run, running).epochs_total = 2

    def step(done: int, elapsed: float, ts: float) -> tuple[str, dict]:
        return ("step", {"epoch": 1, "step": done, "loss": 0.5, "accuracy": 0.5, "epochs": 2, "epoch_step": done,
                         "epoch_steps": 400, "epoch_progress": done / 400, "epoch_elapsed": elapsed, "ts": ts})

    with ThreadServer(app) as server:
        reader = DashboardReader(f"{server.url}/stream/runs")
        reader.start()
        _, _, html = reader.wait_for(lambda e: e[0] == f"row-{running}", "the running run's row")
        assert "epoch 0 of 2" in html and "ETA" not in html
        now = time.time()
        _append(running, [step(100, 5.0, now)])  # a quarter of the epoch in 5 s: 35 s to go
        _, _, html = reader.wait_for(lambda e: e[0] == f"row-{running}" and "step 100/400" in e[2], "the step")
        assert "epoch 1 of 2 · step 100/400 · ETA 35 s" in html and 'style="width: 12.5%"' in html
        _append(running, [step(200, 10.0, now + 1)])
        _, _, html = reader.wait_for(lambda e: e[0] == f"row-{running}" and "step 200/400" in e[2], "the next step")
        assert "ETA 30 s" in html and 'style="width: 25.0%"' in html
        reader.stop.set()
        _make_run(events=1)  # something to read, so the reader notices it should stop
        reader.join(30)
