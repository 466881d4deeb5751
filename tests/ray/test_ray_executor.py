"""The Ray executor against a real Ray head on loopback (tests/ray/conftest.py): runs train as
Ray actors that report over the ingest API, are cancelled, and survive (or not) a lost worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, database_url_for, run_sql
from tests.runs.helpers import run_body, slow_body, wait_exports, wait_for, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("ray")


def _events(api: httpx.Client, run_id: int) -> list[dict]:
    return api.get(f"/api/runs/{run_id}/metrics", params={"limit": 10000}).json()


def _trainer_seqs(data: Path, run_id: int) -> list[int]:
    return [row[0] for row in run_sql(database_url_for(data), "select trainer_seq from run_events where "
                                      "run_id = :run and trainer_seq is not null order by seq", run=run_id)]


def _seconds_since_heartbeat(data: Path, run_id: int) -> float:
    from datetime import UTC, datetime

    beat = run_sql(database_url_for(data), "select heartbeat_at from runs where id = :run", run=run_id)[0][0]
    beat = datetime.fromisoformat(beat) if isinstance(beat, str) else beat
    return (datetime.now(UTC) - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds()


def _files(data: Path, run_id: int, folder: str) -> list[str]:
    directory = data / "artifacts" / f"run-{run_id}" / folder
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _train_to_the_end(server: LiveServer, body: dict) -> tuple[dict, list[dict], dict]:
    with server.api() as api:
        run_id = api.post("/api/runs", json=body).json()["id"]
        run = wait_status(api, run_id, "completed", "failed", timeout=180)
        if run["status"] == "completed":
            wait_exports(api, run_id)  # a local trainer writes TorchScript/ONNX after reporting completed
        return run, _events(api, run_id), {a["name"]: a["bytes"] for a in api.get(f"/api/runs/{run_id}/artifacts").json()}


def test_a_run_on_ray_trains_exactly_like_a_local_run(ray_head, tmp_path):
    body = run_body(epochs=2, seed=3)
    local = LiveServer(tmp_path / "local", env={"TRAINBOARD_SLOTS": "1"}).start()
    try:
        run_local, events_local, artifacts_local = _train_to_the_end(local, body)
    finally:
        local.stop()
    on_ray = LiveServer(tmp_path / "ray", env=ray_head.server_env()).start()
    try:
        run_ray, events_ray, artifacts_ray = _train_to_the_end(on_ray, body)
        with on_ray.api() as api:
            evaluation_ray = api.get(f"/api/runs/{run_ray['id']}/evaluation").json()
            page = api.get(f"/runs/{run_ray['id']}")
        maps = Path(f"/proc/{on_ray.process.pid}/maps").read_text()
        assert "_raylet" in maps and "libtorch" not in maps  # a Ray driver, still without torch
    finally:
        on_ray.stop()
    local_again = LiveServer(tmp_path / "local", env={"TRAINBOARD_SLOTS": "1"}).start()
    try:
        with local_again.api() as api:
            evaluation_local = api.get(f"/api/runs/{run_local['id']}/evaluation").json()
    finally:
        local_again.stop()

    assert run_local["status"] == run_ray["status"] == "completed", (run_local, run_ray)
    assert run_ray["worker"] == f"ray:{ray_head.address}"
    # Same seed on CPU: the same numbers, epoch by epoch and on the test set.
    assert run_ray["test_accuracy"] == run_local["test_accuracy"]
    metrics = lambda events: [(e["kind"], e["payload"].get("epoch"), e["payload"].get("loss"),  # noqa: E731
                               e["payload"].get("val_accuracy")) for e in events if e["kind"] in ("step", "epoch")]
    assert metrics(events_ray) == metrics(events_local)
    assert evaluation_ray["confusion_matrix"] == evaluation_local["confusion_matrix"]
    # Checkpoints and exports where a local run keeps them, under the same names.
    assert _files(tmp_path / "ray", run_ray["id"], "checkpoints") == ["epoch-0001.pt", "epoch-0002.pt"]
    assert _files(tmp_path / "ray", run_ray["id"], "export") == _files(tmp_path / "local", run_local["id"], "export")
    assert set(artifacts_ray) == set(artifacts_local) and len(artifacts_ray) >= 2
    assert [e["seq"] for e in events_ray] == list(range(1, len(events_ray) + 1))
    sent = _trainer_seqs(tmp_path / "ray", run_ray["id"])
    assert sent == list(range(1, len(sent) + 1)) and sent
    assert page.status_code == 200 and "completed" in page.text
    # The data set came over HTTP into the node's cache, by content hash.
    assert len(list((ray_head.node_cache / "blobs").iterdir())) == 5


def test_queued_and_running_runs_on_ray_are_cancelled(ray_head, tmp_path):
    # Two threads per run on a two-CPU head: the cluster holds one run at a time.
    server = LiveServer(tmp_path / "data", env=ray_head.server_env(TRAINBOARD_TRAINER_THREADS="2")).start()
    try:
        with server.api() as api:
            running = api.post("/api/runs", json=slow_body()).json()["id"]
            wait_metrics(api, running, timeout=90)
            queued = api.post("/api/runs", json=slow_body()).json()["id"]
            assert api.get(f"/api/runs/{queued}").json()["status"] == "queued"
            assert api.post(f"/api/runs/{queued}/cancel").json()["status"] == "cancelled"
            api.post(f"/api/runs/{running}/cancel")
            run = wait_status(api, running, "cancelled", "failed", timeout=30)
            assert run["status"] == "cancelled" and run["failure_reason"] == "cancelled by the user", run
            # The freed slot is the cluster's again: a new run starts and trains.
            after = api.post("/api/runs", json=run_body(epochs=1)).json()["id"]
            assert wait_status(api, after, "completed", "failed", timeout=90)["status"] == "completed"
    finally:
        server.stop()


def _wait_checkpoint(api: httpx.Client, run_id: int, epoch: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["kind"] == "checkpoint" and e["payload"].get("epoch", 0) >= epoch for e in _events(api, run_id)):
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} after {timeout}s"
        time.sleep(0.1)


def _kill_trainer(api: httpx.Client, ray_head, run_id: int) -> int:
    run = wait_for(api, run_id, lambda r: r["status"] == "running" and r["pid"], 90, "running with a pid")
    assert run["pid"] in {p.pid for p in ray_head.processes()}, "the trainer is not a worker of the Ray head"
    os.kill(run["pid"], signal.SIGKILL)
    return run["pid"]


def test_a_killed_ray_worker_fails_its_run_with_the_reason(ray_head, tmp_path):
    server = LiveServer(tmp_path / "data", env=ray_head.server_env()).start()
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=slow_body()).json()["id"]
            wait_metrics(api, run_id, timeout=90)
            _kill_trainer(api, ray_head, run_id)
            run = wait_status(api, run_id, "failed", "completed", "cancelled", timeout=30)
            assert run["status"] == "failed" and run["failure_reason"].startswith("Ray worker lost: "), run
            assert "retry" not in {e["kind"] for e in _events(api, run_id)}  # no retries asked for
    finally:
        server.stop()


def test_with_retries_a_lost_worker_resumes_from_its_checkpoint_and_completes(ray_head, tmp_path):
    data = tmp_path / "data"
    server = LiveServer(data, env=ray_head.server_env()).start()
    try:
        with server.api() as api:
            body = run_body(epochs=6, batch_size=4, retries=1)
            run_id = api.post("/api/runs", json=body).json()["id"]
            wait_for(api, run_id, lambda r: r["epoch"] >= 2, 120, "two epochs")
            _wait_checkpoint(api, run_id, 2)  # written by a background thread, after the epoch's row
            killed = _kill_trainer(api, ray_head, run_id)
            run = wait_status(api, run_id, "completed", "failed", timeout=180)
            events = _events(api, run_id)
    finally:
        server.stop()
    assert run["status"] == "completed", run
    retry = [e["payload"] for e in events if e["kind"] == "retry"]
    assert len(retry) == 1 and retry[0]["after"].startswith("Ray worker lost") and retry[0]["resume_epoch"] >= 2
    assert run["pid"] != killed
    # The lost attempt's epochs, then the retry's from its checkpoint on. Checkpoints are written by a
    # background thread after their epoch's row: an epoch the lost attempt finished but had not yet
    # checkpointed is trained again (the run page and series keep the later rows).
    epochs, resumed = [e["payload"]["epoch"] for e in events if e["kind"] == "epoch"], retry[0]["resume_epoch"]
    lost = epochs[:len(epochs) - (6 - resumed)]
    assert lost == list(range(1, len(lost) + 1)) and len(lost) >= resumed, epochs
    assert epochs[len(lost):] == list(range(resumed + 1, 7)), epochs
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    sent = _trainer_seqs(data, run_id)
    assert sent == list(range(1, len(sent) + 1))  # the retry numbered its events on, gap-free
    statuses = [e["payload"]["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "starting", "running", "failed", "queued", "starting", "running", "completed"]


def test_a_server_off_the_cluster_trains_through_ray_client(ray_head, tmp_path):
    # TRAINBOARD_RAY_ADDRESS=ray://HOST:10001 is how docker-compose and docs/deployment.md connect.
    server = LiveServer(tmp_path / "data", env=ray_head.server_env(TRAINBOARD_RAY_ADDRESS=ray_head.client_address))
    server.start(timeout=180)  # the head starts a client server process for it: slow on a busy machine
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=run_body(epochs=1)).json()["id"]
            run = wait_status(api, run_id, "completed", "failed", timeout=120)
            assert run["status"] == "completed" and run["worker"] == f"ray:{ray_head.client_address}", run
            assert run["test_accuracy"] > 0.3
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_an_unreachable_cluster_is_a_clear_error_at_start(tmp_path, scheme):
    from tests.conftest import free_port

    address = f"{scheme}127.0.0.1:{free_port()}"
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_EXECUTOR": "ray", "TRAINBOARD_RAY_ADDRESS": address})
    with pytest.raises(RuntimeError) as failed:
        server.start(timeout=120)
    assert f"cannot connect to the Ray cluster at TRAINBOARD_RAY_ADDRESS={address}" in str(failed.value)


def test_a_cuda_run_on_a_cluster_without_gpus_fails_at_once_with_the_reason(ray_head, tmp_path):
    server = LiveServer(tmp_path / "data", env=ray_head.server_env()).start()
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=run_body(epochs=1, device="cuda")).json()["id"]
            run = wait_status(api, run_id, "failed", "completed", timeout=30)
            assert run["status"] == "failed" and "the Ray cluster has no GPU" in run["failure_reason"], run
    finally:
        server.stop()


def test_a_restarted_server_adopts_its_runs_still_training_on_ray(ray_head, tmp_path):
    data = tmp_path / "data"
    env = ray_head.server_env(TRAINBOARD_HEARTBEAT_TIMEOUT_S="8")
    first = LiveServer(data, env=env).start()
    second = None
    try:
        with first.api() as api:
            run_id = api.post("/api/runs", json=run_body(epochs=8, batch_size=4)).json()["id"]
            wait_for(api, run_id, lambda r: r["epoch"] >= 1, 120, "an epoch")
        first.process.kill()  # SIGKILL: the actor is detached and keeps training, buffering its events
        first.process.wait()
        # Down for longer than the heartbeat timeout: the run's last heartbeat is old when the next
        # server adopts it, and that must not count as a lost worker.
        deadline = time.monotonic() + 30
        while _seconds_since_heartbeat(data, run_id) < 9:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = LiveServer(data, env=env)
        second.port, second.url = first.port, first.url  # its trainers report to this URL
        second.start(timeout=90)
        with second.api() as api:
            run = wait_status(api, run_id, "completed", "failed", "interrupted", timeout=180)
            events = _events(api, run_id)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert run["status"] == "completed", run
    assert any("adopted this run's trainer" in (e["payload"].get("message") or "") for e in events)
    assert [e["payload"]["epoch"] for e in events if e["kind"] == "epoch"] == list(range(1, 9))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    sent = _trainer_seqs(data, run_id)
    assert sent == list(range(1, len(sent) + 1))


def test_a_silent_ray_worker_counts_as_lost_after_the_heartbeat_timeout(ray_head, tmp_path):
    # A node that vanishes leaves its actor's heartbeats silent before Ray notices: a stopped
    # (SIGSTOP) trainer is the same to the server.
    server = LiveServer(tmp_path / "data", env=ray_head.server_env(TRAINBOARD_HEARTBEAT_TIMEOUT_S="8")).start()
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=slow_body()).json()["id"]
            wait_metrics(api, run_id, timeout=90)
            pid = wait_for(api, run_id, lambda r: r["pid"], 30, "a pid")["pid"]
            os.kill(pid, signal.SIGSTOP)
            run = wait_status(api, run_id, "failed", "completed", "cancelled", timeout=30)
            assert run["status"] == "failed", run
            assert run["failure_reason"].startswith("Ray worker lost: the trainer sent no heartbeat for "), run
            deadline = time.monotonic() + 30
            while any(p.pid == pid for p in ray_head.processes()):  # killed, not left stopped
                assert time.monotonic() < deadline, "the silent trainer was not killed"
                time.sleep(0.1)
    finally:
        server.stop()
