"""Bad configs get 422 with a message, and nothing is queued."""

from __future__ import annotations

import pytest

from tests.conftest import LOCAL
from tests.runs.helpers import DIGITS_MLP, run_body


@pytest.fixture
def api(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
        yield client


CIFAR_CNN = {"input_shape": [3, 32, 32], "layers": [
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.mark.parametrize("body, needle", [
    (run_body(dataset="imagenet22k"), "imagenet22k"),
    (run_body(spec=CIFAR_CNN), "(3, 32, 32)"),
    (run_body(batch_size=0), "batch_size"),
    (run_body(epochs=100000), "epochs"),
    (run_body(epochs=0), "epochs"),
    (run_body(optimizer={"name": "adagrad"}), "optimizer"),
    (run_body(optimizer={"name": "adam", "momentum": 0.9}), "adam has no setting momentum"),
    (run_body(spec={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3}]}), "Dense(10)"),
    (run_body(spec={"layers": [{"type": "Dense", "units": -4}]}), "layer"),
    (run_body(device="tpu"), "device"),
    (run_body(normalize="minmax"), "normalize"),
    (run_body(keep_checkpoints=-1), "keep_checkpoints"),
    (run_body(colour="blue"), "colour"),
    ({"preset": "mnist-mlp", "architecture_id": 1, "dataset": "digits"}, "not architecture_id and preset"),
    ({"preset": "cifar10-cnn", "dataset": "digits"}, "cannot take data set 'digits'"),
    ({"preset": "no-such-preset", "dataset": "digits"}, "no-such-preset"),
])
def test_bad_runs_get_422_and_nothing_is_queued(api, body, needle):
    response = api.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]
    assert api.get("/api/runs").json()["total"] == 0


def test_valid_run_is_queued_with_a_snapshot_of_spec_and_config(api):
    response = api.post("/api/runs", json=run_body())
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "queued" and run["spec"]["input_shape"] == [1, 8, 8]
    assert run["spec"]["layers"] == DIGITS_MLP["layers"]
    assert run["config"]["optimizer"] == {"name": "adam", "lr": 0.01}
    assert run["total_params"] == 64 * 32 + 32 + 32 * 10 + 10
    listing = api.get("/api/runs", params={"status": "queued", "dataset": "digits"}).json()
    assert listing["total"] == 1
    assert api.get("/api/runs", params={"dataset": "moons"}).json()["total"] == 0


def test_preset_run_uses_the_preset_dataset(api):
    # Without a data set, the preset's own one is used (on another one it is fitted: test_default_model.py).
    response = api.post("/api/runs", json={"preset": "mnist-mlp"})
    assert response.status_code == 201, response.text
    assert response.json()["dataset"] == "mnist" and response.json()["preset"] == "mnist-mlp"
