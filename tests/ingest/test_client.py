"""`import trainboard` from a user's own script: a real subprocess logs a run the server shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT, LiveServer
from tests.runs.helpers import wait_status

pytestmark = pytest.mark.xdist_group("ingest-client")


@pytest.fixture
def server(tmp_path):
    live = LiveServer(tmp_path / "data").start()
    yield live
    live.stop()


def test_a_script_logs_a_run_that_the_page_the_stream_and_compare_show(server):
    done = subprocess.run([sys.executable, "examples/pytorch_script.py", "--server", server.url, "--epochs", "3",
                           "--name", "from my script"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          # the package as an install would place it (the venv may predate trainboard/)
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = int(re.search(r"\(run (\d+)\)", done.stdout).group(1))
    with server.api() as api:
        run = wait_status(api, run_id, "completed", timeout=30)
        assert run["name"] == "from my script" and run["epoch"] == 3 and run["test_accuracy"] > 0.5
        page = api.get(f"/runs/{run_id}")
        assert page.status_code == 200 and "from my script" in page.text
        assert 'id="cancel-button"' not in page.text and 'id="resume-button"' not in page.text
        evaluation = api.get(f"/api/runs/{run_id}/evaluation").json()
        assert len(evaluation["confusion_matrix"]) == 10 and evaluation["accuracy"] == run["test_accuracy"]
        compared = api.get("/api/compare", params={"runs": str(run_id)})
        assert compared.status_code == 200 and str(run_id) in compared.text
        assert "train_loss" in compared.text
        with api.stream("GET", f"/api/runs/{run_id}/events", params={"after": 0}) as stream:
            text = ""
            for chunk in stream.iter_text():
                text += chunk
                if "event: end" in text:
                    break
        assert "event: epoch" in text and "event: metric" in text and "event: evaluation" in text


def test_the_keras_callback_logs_steps_and_epochs(server):
    import trainboard

    with trainboard.init(server.url, name="keras", config={"optimizer": "adam"}) as run:
        callback = trainboard.KerasCallback(run)
        callback.set_params({"epochs": 2})
        callback.on_train_begin({})
        for epoch in range(2):
            callback.on_epoch_begin(epoch)
            for batch in range(3):
                callback.on_train_batch_end(batch, {"loss": 1.0 - 0.1 * batch, "accuracy": 0.5})
            callback.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75})
    with httpx.Client(base_url=server.url, timeout=30) as api:
        run_row = wait_status(api, run.id, "completed", timeout=30)
        rows = api.get(f"/api/runs/{run.id}/metrics").json()
    assert run_row["epoch"] == 2 and run_row["best_val_accuracy"] == 0.75
    assert [r["step"] for r in rows if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    epochs = [r["payload"] for r in rows if r["kind"] == "epoch"]
    assert [(p["epoch"], p["train_loss"], p["val_accuracy"]) for p in epochs] == [(1, 0.5, 0.75), (2, 0.5, 0.75)]
