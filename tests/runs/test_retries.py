"""`config.retries` with the local executor: a run whose trainer is lost is queued again and
resumes from its last recorded checkpoint (the Ray executor's are in tests/ray)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import run_body, wait_for, wait_status

pytestmark = pytest.mark.xdist_group("retries")


def test_a_killed_local_trainer_is_retried_from_its_checkpoint(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_SLOTS": "1"}).start()
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=run_body(epochs=5, batch_size=4, retries=2)).json()["id"]
            running = wait_for(api, run_id, lambda r: r["epoch"] >= 2 and r["pid"], 120, "two epochs")
            os.killpg(running["pid"], signal.SIGKILL)
            run = wait_status(api, run_id, "completed", "failed", timeout=180)
            events = api.get(f"/api/runs/{run_id}/metrics", params={"limit": 10000}).json()
    finally:
        server.stop()
    assert run["status"] == "completed", run
    retries = [e["payload"] for e in events if e["kind"] == "retry"]
    assert len(retries) == 1 and retries[0]["attempt"] == 1 and retries[0]["of"] == 2, retries
    assert "killed (SIGKILL)" in retries[0]["after"] and retries[0]["resume_epoch"] >= 2
    assert [e["payload"]["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

