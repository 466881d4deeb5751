"""Runs as real background processes against a real SQLite file."""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import run_body, slow_body, wait_exports, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("runs-live")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    live = LiveServer(tmp_path_factory.mktemp("runs") / "data", env={"TRAINBOARD_SLOTS": "2"}).start()
    yield live
    live.stop()


@pytest.fixture
def api(server):
    with server.api() as client:
        yield client


def test_run_goes_queued_running_completed_with_metrics_and_evaluation(api):
    created = api.post("/api/runs", json=run_body(epochs=3))
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "queued"
    done = wait_status(api, run["id"], "completed", "failed")
    assert done["status"] == "completed", done["failure_reason"]
    assert done["test_accuracy"] > 0.5 and done["epoch"] == 3
    assert {"weights", "torchscript", "onnx", "pytorch"} <= wait_exports(api, run["id"])  # written after `completed`
    rows = api.get(f"/api/runs/{run['id']}/metrics").json()
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must be gap-free and increasing"
    statuses = [r["payload"]["status"] for r in rows if r["kind"] == "status"]
    assert statuses == ["queued", "starting", "running", "completed"]
    assert sum(r["kind"] == "epoch" for r in rows) == 3
    later = api.get(f"/api/runs/{run['id']}/metrics", params={"after": seqs[-3]}).json()
    assert [r["seq"] for r in later] == seqs[-2:]
    evaluation = api.get(f"/api/runs/{run['id']}/evaluation").json()
    assert evaluation["split"] == "test" and len(evaluation["confusion_matrix"]) == 10
    assert len(evaluation["per_class"]) == 10 and set(evaluation["per_class"][0]) >= {"precision", "recall", "f1", "support"}
    assert evaluation["class_names"][:3] == ["0", "1", "2"]
    assert evaluation["epochs"] == [1, 2, 3]
    by_epoch = api.get(f"/api/runs/{run['id']}/evaluation", params={"epoch": 2}).json()
    assert by_epoch["split"] == "val" and by_epoch["epoch"] == 2
    weights = api.get(f"/api/runs/{run['id']}/artifacts/weights")
    assert weights.status_code == 200 and len(weights.content) > 1000


def test_cancel_stops_a_running_run_quickly_and_keeps_metrics(api):
    run = api.post("/api/runs", json=slow_body()).json()
    wait_metrics(api, run["id"])
    assert api.post(f"/api/runs/{run['id']}/cancel").status_code == 200
    assert api.post(f"/api/runs/{run['id']}/cancel").status_code == 200  # twice is harmless
    done = wait_status(api, run["id"], "cancelled", "failed", "completed", timeout=60)
    # Stopped by the trainer itself at its next step, not killed after the grace period.
    assert done["status"] == "cancelled" and done["failure_reason"] == "cancelled by the user"
    assert any(r["kind"] == "step" for r in api.get(f"/api/runs/{run['id']}/metrics").json())


def test_cancelling_a_queued_run_means_it_never_starts(server, tmp_path):
    # A server with no free slot: the queued run stays queued until cancelled.
    with server.api() as api:
        blockers = [api.post("/api/runs", json=slow_body()).json() for _ in range(2)]
        queued = api.post("/api/runs", json=run_body()).json()
        assert api.post(f"/api/runs/{queued['id']}/cancel").json()["status"] == "cancelled"
        for blocker in blockers:
            api.post(f"/api/runs/{blocker['id']}/cancel")
        for blocker in blockers:
            wait_status(api, blocker["id"], "cancelled", "failed", timeout=60)
        # Runs are claimed in id order: once a later run has completed, the scheduler has passed
        # the cancelled one for good.
        later = api.post("/api/runs", json=run_body()).json()
        wait_status(api, later["id"], "completed", "failed", timeout=120)
        final = api.get(f"/api/runs/{queued['id']}").json()
        assert final["status"] == "cancelled" and final["started_at"] is None


def test_kill_9_marks_the_run_failed_and_the_server_keeps_answering(api):
    run = api.post("/api/runs", json=slow_body()).json()
    wait_metrics(api, run["id"])
    pid = api.get(f"/api/runs/{run['id']}").json()["pid"]
    os.kill(pid, signal.SIGKILL)
    done = wait_status(api, run["id"], "failed", timeout=10)
    assert "killed" in done["failure_reason"] and "SIGKILL" in done["failure_reason"]
    assert api.get("/healthz").status_code == 200
    # No retries asked for (config.retries = 0): it stays failed.
    assert "retry" not in {e["kind"] for e in api.get(f"/api/runs/{run['id']}/metrics").json()}
    assert api.get(f"/api/runs/{run['id']}").json()["status"] == "failed"


def test_diverging_run_fails_with_diverged(api):
    linear_head = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                              {"type": "Dense", "units": 10}]}
    body = run_body(linear_head, epochs=3, optimizer={"name": "sgd", "lr": 1000.0}, loss="mse")
    run = api.post("/api/runs", json=body).json()
    done = wait_status(api, run["id"], "failed", "completed")
    assert done["status"] == "failed"
    assert "diverged at epoch" in done["failure_reason"] and "step" in done["failure_reason"]


def test_resume_continues_the_epochs_and_fork_makes_a_new_run(api):
    run = api.post("/api/runs", json=run_body(epochs=300, batch_size=16)).json()
    wait_for_epoch = time.monotonic() + 60
    while api.get(f"/api/runs/{run['id']}").json()["epoch"] < 2 and time.monotonic() < wait_for_epoch:
        time.sleep(0.05)
    api.post(f"/api/runs/{run['id']}/cancel")
    stopped = wait_status(api, run["id"], "cancelled", timeout=10)
    reached = stopped["epoch"]
    assert reached >= 2
    last_seq = stopped["last_seq"]

    # Resume with fewer epochs to go: change nothing, it continues from the last checkpoint.
    resumed = api.post(f"/api/runs/{run['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    rows = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = api.get(f"/api/runs/{run['id']}/metrics", params={"after": last_seq}).json()
        if any(r["kind"] == "epoch" for r in rows):
            break
        time.sleep(0.1)
    epochs = [r["payload"]["epoch"] for r in rows if r["kind"] == "epoch"]
    assert epochs and epochs[0] == reached + 1, f"resume restarted at {epochs[:1]}, expected {reached + 1}"
    api.post(f"/api/runs/{run['id']}/cancel")
    wait_status(api, run["id"], "cancelled", timeout=10)

    fork = api.post(f"/api/runs/{run['id']}/fork", json={"epoch": 1, "config": {"epochs": 2, "batch_size": 64,
                                                                                 "optimizer": {"lr": 0.005}}})
    assert fork.status_code == 201, fork.text
    child = fork.json()
    assert child["parent_run_id"] == run["id"] and child["fork_epoch"] == 1
    assert child["config"]["optimizer"]["lr"] == 0.005 and child["config"]["optimizer"]["name"] == "adam"
    done = wait_status(api, child["id"], "completed", "failed")
    assert done["status"] == "completed", done["failure_reason"]


def test_delete_removes_artifacts_and_paths_cannot_escape(api, server):
    run = api.post("/api/runs", json=run_body(epochs=1)).json()
    wait_status(api, run["id"], "completed", "failed")
    run_dir = Path(server.data_dir) / "artifacts" / f"run-{run['id']}"
    assert run_dir.exists()
    for bad in ["..%2F..%2Ftrainboard.db", "%2e%2e", "..", "%2e%2e%2f%2e%2e%2ftrainboard.db", "%2Fetc%2Fpasswd",
                "/etc/passwd", "weights%2F..%2F..%2F..", "../../trainboard.db"]:
        # http.client sends the path as written; httpx would normalize the dots away client-side.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", f"/api/runs/{run['id']}/artifacts/{bad}")
        status = connection.getresponse().status
        connection.close()
        assert status == 404, (bad, status)
    assert api.delete(f"/api/runs/{run['id']}").status_code == 204
    assert not run_dir.exists()
    assert api.get(f"/api/runs/{run['id']}").status_code == 404


def test_restart_picks_up_queued_runs_and_marks_orphans_interrupted_and_resumable(tmp_path):
    data = tmp_path / "data"
    first = LiveServer(data, env={"TRAINBOARD_SLOTS": "1"}).start()
    with first.api() as api:
        running = api.post("/api/runs", json=slow_body()).json()
        queued = api.post("/api/runs", json=run_body(epochs=1)).json()
        wait_metrics(api, running["id"])
        pid = api.get(f"/api/runs/{running['id']}").json()["pid"]
    # The server dies hard and takes its trainer with it (as a machine reboot would).
    first.process.kill()
    first.process.wait()
    os.killpg(pid, signal.SIGKILL)
    assert first.sql("select status from runs where id = :run", run=queued["id"]) == [("queued",)]
    second = LiveServer(data, env={"TRAINBOARD_SLOTS": "1"}).start()
    try:
        with second.api() as api:
            orphan = api.get(f"/api/runs/{running['id']}").json()  # recovered before the server answers
            assert orphan["status"] == "interrupted", orphan
            assert "stopped while the server was down" in orphan["failure_reason"]
            done = wait_status(api, queued["id"], "completed", "failed")
            assert done["status"] == "completed"
            assert api.post(f"/api/runs/{running['id']}/resume").json()["status"] == "queued"
            api.post(f"/api/runs/{running['id']}/cancel")
            wait_status(api, running["id"], "cancelled", timeout=30)
    finally:
        second.stop()


@pytest.mark.parametrize("normalize", ["auto", "standardize"])
def test_predict_prepares_images_the_way_the_run_was_trained(api, server, normalize):
    """The data set's own test images uploaded as PNGs get the probabilities the engine computes on them."""
    import torch
    from safetensors.torch import load as load_safetensors

    from app.datasets import registry
    from app.engine.build import build_model
    from app.engine.data import DeviceData

    run = api.post("/api/runs", json=run_body(epochs=4, normalize=normalize)).json()
    done = wait_status(api, run["id"], "completed", "failed")
    assert done["status"] == "completed", done["failure_reason"]
    assert done["config"]["normalize"] == normalize
    model = build_model(done["spec"], load_pretrained=False).eval()
    model.load_state_dict(load_safetensors(api.get(f"/api/runs/{run['id']}/artifacts/weights").content))
    arrays = registry.load_dataset("digits", server.data_dir, download=False)
    x_test, y_test, _ = next(DeviceData(arrays, torch.device("cpu"), normalize=normalize).eval_batches("test", 12))
    with torch.no_grad():
        expected = torch.softmax(model(x_test[:12]), dim=1)
    correct = 0
    for index in range(12):
        png = api.get(f"/api/datasets/digits/samples/{index}.png").content
        answer = api.post(f"/api/runs/{run['id']}/predict", files={"file": ("digit.png", png, "image/png")},
                          params={"top_k": 3})
        assert answer.status_code == 200, answer.text
        top = answer.json()["predictions"]
        assert [p["index"] for p in top] == expected[index].topk(3).indices.tolist()
        assert top[0]["probability"] == pytest.approx(float(expected[index].max()), abs=0.02)
        correct += top[0]["index"] == int(y_test[index])
    assert correct >= 9, f"{correct}/12 test digits predicted right"
