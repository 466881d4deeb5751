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
                while min(received.values()) < 5:
                    await asyncio.sleep(0.05)
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
