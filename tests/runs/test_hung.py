"""A trainer that is alive but silent (here: stopped with SIGSTOP) is failed and killed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import slow_body, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("runs-hung")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    live = LiveServer(tmp_path_factory.mktemp("hung") / "data", env={"TRAINBOARD_HUNG_TIMEOUT_S": "4"}).start()
    yield live
    live.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(") ")[1][0] != "Z"


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
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
        assert api.get("/healthz").status_code == 200
