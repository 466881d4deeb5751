"""Trainers that hang (alive but silent: stopped with SIGSTOP) or never start fail their runs."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import process_alive, slow_body, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("runs-hung")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    live = LiveServer(tmp_path_factory.mktemp("hung") / "data", env={"TRAINBOARD_HUNG_TIMEOUT_S": "4"}).start()
    yield live
    live.stop()


def _standby_ready(server: LiveServer, timeout: float = 60) -> None:
    """A warm trainer is waiting: the run starts at once, so only the SIGSTOP silences it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("ready" in log.read_text() for log in (server.data_dir / "logs").glob("standby-*.log")):
            return
        time.sleep(0.1)
    raise AssertionError("no standby trainer became ready")


def test_a_silent_trainer_fails_its_run_and_is_killed(server):
    _standby_ready(server)
    with server.api() as api:
        run = api.post("/api/runs", json=slow_body()).json()
        wait_metrics(api, run["id"])
        pid = api.get(f"/api/runs/{run['id']}").json()["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, but no step, no heartbeat
        done = wait_status(api, run["id"], "failed", timeout=30)
        assert "stopped responding" in done["failure_reason"] and "killed" in done["failure_reason"]
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(pid)
        assert api.get("/healthz").status_code == 200


# --- trainers that cannot even start: the run fails with the reason within seconds -----------

def _queued_run() -> int:
    from app.core.db import session_scope
    from app.runs import lifecycle
    from app.runs.models import Run

    with session_scope() as db_session:
        return lifecycle.enqueue(db_session, Run(name="t", spec={}, dataset="digits", config={})).id


def _run_until_final(launcher, settings, run_id: int, timeout: float = 60):
    """Schedule with a real scheduler thread until the run is final; the run and its trainer's pid."""
    from app.core.db import session_scope
    from app.executors.scheduler import Scheduler
    from app.runs.models import TERMINAL_STATUSES, Run

    scheduler = Scheduler(settings, launcher)
    scheduler.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(write=False) as db_session:
                run = db_session.get(Run, run_id)
                if run.status in TERMINAL_STATUSES:
                    return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} is still {run.status} after {timeout}s")
    finally:
        scheduler.stop()


def test_a_trainer_command_that_cannot_run_fails_the_run_at_once(data_dir):
    from app.core.config import get_settings
    from app.executors.local import LocalLauncher

    run_id = _queued_run()
    launcher = LocalLauncher(get_settings(), python=str(data_dir / "no-such-python"))
    run = _run_until_final(launcher, get_settings(), run_id)
    assert run.status == "failed"
    assert "could not be started" in run.failure_reason and "no-such-python" in run.failure_reason


def test_a_trainer_that_crashes_before_it_reports_fails_the_run_with_its_error(data_dir):
    from app.core.config import get_settings
    from app.executors.local import LocalLauncher

    broken = data_dir / "broken-site" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('torch is broken on purpose')\n")
    run_id = _queued_run()
    # The real trainer command, with an import that fails before the trainer reports.
    launcher = LocalLauncher(get_settings(), env={"PYTHONPATH": str(broken.parent)})
    run = _run_until_final(launcher, get_settings(), run_id)
    assert run.status == "failed", run.failure_reason
    assert run.failure_reason.startswith("the trainer could not start: the trainer process exited with code 1")
    assert "ImportError: torch is broken on purpose" in run.failure_reason
    assert run.started_at is not None and run.finished_at is not None


def test_a_trainer_that_never_reports_fails_the_run_after_the_start_timeout_and_is_killed(data_dir):
    from app.core.config import Settings
    from app.executors.local import LocalLauncher

    silent = data_dir / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 300\n")  # starts, never reports
    silent.chmod(0o755)
    settings = Settings(start_timeout_s=2)
    launcher = LocalLauncher(settings, python=str(silent), warm=False)
    run_id = _queued_run()
    run = _run_until_final(launcher, settings, run_id)
    assert run.status == "failed"
    assert "did not report within 2 s" in run.failure_reason and "killed" in run.failure_reason
    deadline = time.monotonic() + 10
    while process_alive(run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(run.pid)
