"""A server killed with SIGKILL while runs train: the restarted server adopts the live trainers.

Real processes: `trainboard serve` twice on one data dir, real trainers. A trainer is frozen
with SIGSTOP (at a moment it holds no SQLite write lock) while no server is up, so the test, not
the CPU's speed, decides that the run is still going when the second server looks at it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import LiveServer, run_sql
from tests.runs.helpers import process_alive, run_body, slow_body, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("runs-restart")


def _in_a_transaction(database_url: str) -> bool:
    """Whether some connection holds a write lock (SQLite) or an open transaction (PostgreSQL)."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0.2, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            connection.close()
    return run_sql(database_url, "select count(*) from pg_stat_activity where datname = current_database() "
                   "and pid <> pg_backend_pid() and state not in ('idle')")[0][0] > 0


def _freeze_outside_a_write(pid: int, database_url: str, timeout: float = 60) -> None:
    """SIGSTOP the trainer's process group at a moment it is not inside a database transaction
    (a frozen writer would block every other writer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.killpg(pid, signal.SIGSTOP)
        if not _in_a_transaction(database_url):
            return
        os.killpg(pid, signal.SIGCONT)  # it was frozen inside a write: let it finish, try again
        time.sleep(0.05)
    raise AssertionError("could not freeze the trainer outside a write transaction")


def _thaw(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _kill_hard(server: LiveServer) -> None:
    server.process.kill()  # SIGKILL: no shutdown, its trainers keep going in their own groups
    server.process.wait()


def test_a_restarted_server_adopts_a_live_trainer_which_keeps_its_slot_and_completes(tmp_path):
    data = tmp_path / "data"
    first = LiveServer(data, env={"TRAINBOARD_SLOTS": "1"}).start()
    second = None
    pid = None
    try:
        with first.api() as api:
            adopted = api.post("/api/runs", json=run_body(epochs=30, batch_size=8)).json()
            waiting = api.post("/api/runs", json=run_body(epochs=1)).json()
            wait_metrics(api, adopted["id"])  # mid-run: it has written metric rows
            pid = api.get(f"/api/runs/{adopted['id']}").json()["pid"]
        _kill_hard(first)
        _freeze_outside_a_write(pid, first.database_url)

        second = LiveServer(data, env={"TRAINBOARD_SLOTS": "1"}).start()
        with second.api() as api:
            # The restarted server has recovered before it answers: adopted, not interrupted.
            run = api.get(f"/api/runs/{adopted['id']}").json()
            assert run["status"] == "running" and run["pid"] == pid, run
            assert api.get(f"/api/runs/{waiting['id']}").json()["status"] == "queued"
            _thaw(pid)
            done = wait_status(api, adopted["id"], "completed", "failed", "interrupted", timeout=180)
            assert done["status"] == "completed", done["failure_reason"]
            after = wait_status(api, waiting["id"], "completed", "failed", timeout=120)
            assert after["status"] == "completed", after["failure_reason"]
            # With one slot, the queued run waited for the adopted one to finish.
            assert datetime.fromisoformat(after["started_at"]) >= datetime.fromisoformat(done["finished_at"])
            # Its exports may still be adding rows after `completed`: check up to the seq read first.
            last_seq = api.get(f"/api/runs/{adopted['id']}").json()["last_seq"]
            rows = api.get(f"/api/runs/{adopted['id']}/metrics", params={"limit": 10000}).json()
        assert last_seq >= done["last_seq"]
        assert [r["seq"] for r in rows if r["seq"] <= last_seq] == list(range(1, last_seq + 1)), "seq must have no hole"
        assert [r["payload"]["status"] for r in rows if r["kind"] == "status"] == [
            "queued", "starting", "running", "completed"]
        assert any(r["kind"] == "log" and "adopted" in r["payload"]["message"] for r in rows)
        assert done["epoch"] == 30 and done["test_accuracy"] > 0.5
    finally:
        if pid:
            _thaw(pid)
        if second:
            second.stop()
        first.stop()


def test_an_adopted_trainer_can_be_cancelled_and_is_hang_checked(tmp_path):
    data = tmp_path / "data"
    first = LiveServer(data, env={"TRAINBOARD_SLOTS": "2"}).start()
    second = None
    pids: list[int] = []
    try:
        with first.api() as api:
            cancelled = api.post("/api/runs", json=slow_body()).json()
            hung = api.post("/api/runs", json=slow_body()).json()
            for run in (cancelled, hung):
                wait_metrics(api, run["id"])
            pids = [api.get(f"/api/runs/{r['id']}").json()["pid"] for r in (cancelled, hung)]
        _kill_hard(first)
        _freeze_outside_a_write(pids[1], first.database_url)  # alive, but silent from now on

        second = LiveServer(data, env={"TRAINBOARD_SLOTS": "2", "TRAINBOARD_HUNG_TIMEOUT_S": "5"}).start()
        with second.api() as api:
            assert api.get(f"/api/runs/{cancelled['id']}").json()["status"] == "running"
            assert api.post(f"/api/runs/{cancelled['id']}/cancel").status_code == 200
            stopped = wait_status(api, cancelled["id"], "cancelled", "failed", "completed", timeout=60)
            assert stopped["status"] == "cancelled", stopped["failure_reason"]
            failed = wait_status(api, hung["id"], "failed", "completed", "interrupted", timeout=90)
            assert failed["status"] == "failed"
            # Only the hang check of a trainer in our slots says this (a vanished one is interrupted).
            assert "stopped responding" in failed["failure_reason"] and "killed" in failed["failure_reason"]
            rows = api.get(f"/api/runs/{hung['id']}/metrics", params={"limit": 10000}).json()
            assert any(r["kind"] == "log" and "adopted" in r["payload"]["message"] for r in rows)
        deadline = time.monotonic() + 30
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(process_alive(p) for p in pids), "both adopted trainers must be gone"
    finally:
        for pid in pids:
            _thaw(pid)
        if second:
            second.stop()
        first.stop()


def _sqlite_run(data_dir: Path, status: str, pid: int | None, worker: str) -> int:
    from app.core.db import session_scope
    from app.runs import lifecycle
    from app.runs.models import Run

    with session_scope() as db_session:
        run = lifecycle.enqueue(db_session, Run(name="t", spec={}, dataset="digits", config={}))
        assert lifecycle.claim(db_session, run.id, worker)
        assert lifecycle.launched(db_session, run.id, pid)
        if status == "running":
            assert lifecycle.report_running(db_session, run.id, pid)
        return run.id


def test_recovery_never_adopts_a_reused_pid_and_interrupts_runs_whose_trainer_is_gone(data_dir):
    """A live process that is not a trainer (pid reuse), a dead pid, no pid: all interrupted."""
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.executors.local import LocalLauncher, is_trainer
    from app.executors.scheduler import Scheduler
    from app.runs.models import Run

    impostor = subprocess.Popen(["sleep", "300"])
    lookalike = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "app.worker"],
                                 stdin=subprocess.PIPE)
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        launcher = LocalLauncher(get_settings(), warm=False)
        assert not is_trainer(impostor.pid) and not is_trainer(dead.pid) and is_trainer(lookalike.pid)
        reused = _sqlite_run(data_dir, "running", impostor.pid, launcher.owner)
        gone = _sqlite_run(data_dir, "running", dead.pid, launcher.owner)
        never_launched = _sqlite_run(data_dir, "starting", None, launcher.owner)
        elsewhere = _sqlite_run(data_dir, "running", impostor.pid, "local:another-host")
        ours = _sqlite_run(data_dir, "running", lookalike.pid, launcher.owner)
        scheduler = Scheduler(get_settings(), launcher)
        scheduler.recover()
        with session_scope(write=False) as db_session:
            status = {run_id: db_session.get(Run, run_id) for run_id in (reused, gone, never_launched, elsewhere, ours)}
            assert [status[r].status for r in (reused, gone, never_launched)] == ["interrupted"] * 3
            assert all("stopped while the server was down" in status[r].failure_reason
                       for r in (reused, gone, never_launched))
            assert status[elsewhere].status == "running", "another host's run is left to the heartbeat reaper"
            assert status[ours].status == "running"
        assert set(scheduler.active) == {ours}, "the adopted trainer holds a slot"
        lookalike.stdin.close()  # the adopted "trainer" exits without reporting: its run fails
        lookalike.wait(timeout=30)
        scheduler.tick()
        with session_scope(write=False) as db_session:
            run = db_session.get(Run, ours)
            assert run.status == "failed" and "adopted after a server restart" in run.failure_reason
        assert scheduler.active == {}
    finally:
        for process in (impostor, lookalike):
            process.kill()
            process.wait()
