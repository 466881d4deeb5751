"""The queue: one slot runs one at a time in order; eight at once never lock SQLite."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import run_body, wait_status

pytestmark = pytest.mark.xdist_group("runs-queue")


def test_three_runs_with_one_slot_run_in_order(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_SLOTS": "1"}).start()
    try:
        with server.api() as api:
            ids = [api.post("/api/runs", json=run_body(epochs=2)).json()["id"] for _ in range(3)]
            runs = [wait_status(api, i, "completed", "failed") for i in ids]
        assert [r["status"] for r in runs] == ["completed"] * 3
        started = [datetime.fromisoformat(r["started_at"]) for r in runs]
        finished = [datetime.fromisoformat(r["finished_at"]) for r in runs]
        assert started == sorted(started), "runs must start in the order they were queued"
        for i in range(2):
            assert finished[i] <= started[i + 1], "with one slot, runs must not overlap"
    finally:
        server.stop()


def test_eight_runs_at_once_never_lock_the_database_and_the_list_keeps_answering(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_SLOTS": "8"}).start()
    try:
        with server.api() as api:
            ids = [api.post("/api/runs", json=run_body(epochs=3, batch_size=8)).json()["id"] for _ in range(8)]
            deadline = time.monotonic() + 240
            while True:
                assert time.monotonic() < deadline, "the eight runs did not finish in 240 s"
                listing = api.get("/api/runs", params={"limit": 20})
                assert listing.status_code == 200
                items = listing.json()["items"]
                if all(r["status"] in ("completed", "failed") for r in items if r["id"] in ids):
                    break
                time.sleep(0.1)
            runs = [api.get(f"/api/runs/{i}").json() for i in ids]
            seqs = {i: [e["seq"] for e in api.get(f"/api/runs/{i}/metrics", params={"limit": 10000}).json()]
                    for i in ids}
        reasons = [r["failure_reason"] for r in runs if r["status"] != "completed"]
        assert reasons == [], reasons
        # They really ran side by side: some run started before another one finished.
        spans = sorted((r["started_at"], r["finished_at"]) for r in runs)
        assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
        for run_id in ids:  # every run's events are numbered 1..N with no gap
            assert seqs[run_id] and seqs[run_id] == list(range(1, len(seqs[run_id]) + 1)), run_id
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "data" / "logs").glob("*.log"))
        logs += (tmp_path / "data" / "server.log").read_text(errors="replace")
        assert "database is locked" not in logs
    finally:
        server.stop()


def test_serve_refuses_an_unknown_executor_at_start_up(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port

    env = {**os.environ, "TRAINBOARD_EXECUTOR": "kubernetes", "TRAINBOARD_DATA_DIR": str(tmp_path / "data")}
    answer = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    assert "TRAINBOARD_EXECUTOR=kubernetes is unknown: use local or ray" in answer.stderr


def test_the_ray_executor_without_the_ray_extra_says_how_to_install_it(monkeypatch):
    import importlib.util

    from app.core.config import Settings
    from app.executors import ExecutorUnavailable, check_executor

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ExecutorUnavailable, match=r"needs the Ray extra: pip install 'trainboard\[ray\]'"):
        check_executor(Settings(executor="ray"))
    check_executor(Settings(executor="local"))  # the local executor needs nothing more


class _Launcher:
    """A launcher that starts nothing: it records what each tick asks of its standby."""

    owner, remote = "local:test", False

    def __init__(self) -> None:
        self.wanted: list[bool] = []
        self.launched: list[int] = []

    def resources(self):
        from app.executors.base import Resources

        return Resources(cpu_threads=2, slots=1)

    def prepare(self, wanted: bool = True) -> None:
        self.wanted.append(wanted)

    def launch(self, run_id, assignment):
        from app.executors.base import Handle

        self.launched.append(run_id)
        return Handle(run_id=run_id, pid=None)

    def alive(self, handle) -> bool:
        return True

    def adopt(self, run):
        return None

    def close(self) -> None:
        pass


def test_no_standby_warms_up_while_every_slot_is_busy_and_nothing_waits(data_dir):
    """A standby's warm-up takes a core for seconds: it is wanted only when a run could use it soon."""
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.executors.scheduler import Scheduler
    from app.runs import lifecycle
    from app.runs.models import Run

    def enqueue() -> int:
        with session_scope() as db_session:
            return lifecycle.enqueue(db_session, Run(name="t", spec={}, dataset="digits", config={})).id

    launcher = _Launcher()
    scheduler = Scheduler(get_settings(), launcher)
    scheduler.tick()
    assert launcher.wanted[-1] is True, "a free slot: a standby should be warm for the next run"
    first = enqueue()
    scheduler.tick()
    assert launcher.launched == [first]
    assert launcher.wanted[-1] is False, "the only slot is busy and nothing waits: no standby yet"
    enqueue()
    scheduler.tick()
    assert len(launcher.launched) == 1, "one slot: the second run waits"
    assert launcher.wanted[-1] is True, "a run waits for the slot: its trainer should be warm when it frees"
