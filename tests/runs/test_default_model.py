"""Any data set gets a model: a preset fitted to it when only its input and output layers differ (the
server and `trainboard run` build the same layers), the default model when the body names none, and a
422 that says why when a preset cannot take the data set."""

from __future__ import annotations

import pytest

from tests.conftest import LOCAL


@pytest.fixture
def api(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
        yield client


def dense(units: int, activation: str = "linear") -> dict:
    return {"type": "Dense", "units": units, "activation": activation}


def iris_like_csv(rows: int = 60) -> bytes:
    """4 features, 3 classes, as a user's CSV."""
    lines = ["f1,f2,f3,f4,label"]
    for i in range(rows):
        label = i % 3
        lines.append(f"{label + i % 5 * 0.1},{label * 2 - i % 4 * 0.1},{i % 7 * 0.3},{label * 0.5},{label}")
    return ("\n".join(lines) + "\n").encode()


def cli_model(*argv: str) -> tuple[dict, str]:
    """What `trainboard run ARGV` trains in this process (without training it)."""
    from app.cli import build_parser
    from app.cli_run import _run_create
    from app.runs import service as runs_service

    spec, dataset, _, _ = runs_service.prepare(db_session=None, run_in=_run_create(build_parser().parse_args(["run", *argv])))
    return spec, dataset


@pytest.mark.parametrize("preset, dataset, layers", [
    ("mnist-mlp", "digits", [{"type": "Flatten"}, dense(128, "relu"), dense(10, "softmax")]),
    ("mnist-mlp-dropout", "spirals", [{"type": "Flatten"}, dense(128, "relu"), {"type": "Dropout", "rate": 0.2},
                                      dense(3, "softmax")]),
    # The LSTM reads an 8x8 digit as 8 rows of 8: its first Reshape follows the input shape.
    ("mnist-lstm", "digits", [{"type": "Reshape", "target_shape": [8, 8]}, {"type": "LSTM", "units": 128},
                              dense(10, "softmax")]),
])
def test_a_preset_on_another_data_set_is_fitted_to_it_as_the_cli_fits_it(api, preset, dataset, layers):
    response = api.post("/api/runs", json={"preset": preset, "dataset": dataset, "config": {"epochs": 1}})
    assert response.status_code == 201, response.text
    run = response.json()
    shape = api.get(f"/api/datasets/{dataset}").json()["input_shape"]
    assert run["preset"] == preset and run["dataset"] == dataset
    assert run["spec"] == {"input_shape": shape, "layers": layers}
    assert cli_model("--preset", preset, "--dataset", dataset) == (run["spec"], dataset)


def test_a_preset_on_its_own_data_set_is_unchanged(api):
    from app.architectures import presets

    response = api.post("/api/runs", json={"preset": "mnist-mlp"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == presets.get_preset("mnist-mlp").spec
    assert response.json()["total_params"] == 101_770


@pytest.mark.parametrize("preset, dataset, needles", [
    ("cifar10-cnn", "digits", ["made for cifar10 (3x32x32)", "'digits' (1x8x8, 10 classes)", "MaxPooling2D"]),
    ("cifar10-cnn", "moons", ["'moons' (2, 2 classes)", "Conv2D needs images"]),
    ("mnist-lstm", "spirals", ["made for mnist (1x28x28)", "Reshape to (28, 28) needs 784 values"]),
    ("transfer-resnet18", "digits", ["3-channel"]),
])
def test_a_preset_that_cannot_take_the_data_set_gets_a_422_that_says_why(api, preset, dataset, needles):
    response = api.post("/api/runs", json={"preset": preset, "dataset": dataset})
    assert response.status_code == 422, response.text
    body = response.json()
    for needle in [f"preset '{preset}'", "by changing only its input and output layers", "default model", *needles]:
        assert needle in body["detail"], needle
    assert body["errors"][0]["field"] == "preset"
    assert api.get("/api/runs").json()["total"] == 0
    with pytest.raises(Exception, match="by changing only its input and output layers"):
        cli_model("--preset", preset, "--dataset", dataset)  # the CLI refuses it with the same words


def test_no_model_trains_the_data_sets_default_model(api):
    # Images get a small CNN (same padding, so 8x8 digits survive two poolings).
    response = api.post("/api/runs", json={"dataset": "digits", "config": {"epochs": 1}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["name"] == "default model on digits" and run["preset"] is None and run["architecture_id"] is None
    assert [layer["type"] for layer in run["spec"]["layers"]] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert run["spec"]["layers"][0]["padding"] == "same" and run["spec"]["layers"][-1] == dense(10, "softmax")
    assert cli_model("--dataset", "digits") == (run["spec"], "digits")

    # Points get an MLP sized to them: 2 features + 3 classes round up to the smallest width, 32.
    spirals = api.post("/api/runs", json={"dataset": "spirals"}).json()
    assert spirals["spec"] == {"input_shape": [2], "layers": [dense(32, "relu"), dense(32, "relu"),
                                                              dense(3, "softmax")]}


def test_an_uploaded_csv_gets_an_mlp_sized_to_its_features_and_classes(api):
    uploaded = api.post("/api/datasets", data={"name": "flowers"},
                        files={"file": ("flowers.csv", iris_like_csv(), "text/csv")})
    assert uploaded.status_code == 201, uploaded.text
    response = api.post("/api/runs", json={"dataset": "flowers"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == {"input_shape": [4], "layers": [dense(32, "relu"), dense(32, "relu"),
                                                                      dense(3, "softmax")]}
    # A preset made for images takes it too when it only needs new input and output layers.
    fitted = api.post("/api/runs", json={"preset": "mnist-mlp", "dataset": "flowers"}).json()
    assert fitted["spec"]["layers"][-1] == dense(3, "softmax") and fitted["total_params"] == 4 * 128 + 128 + 129 * 3


def test_the_model_choice_is_still_checked(api):
    no_data = api.post("/api/runs", json={})
    assert no_data.status_code == 422 and "choose a data set" in no_data.json()["detail"]
    two = api.post("/api/runs", json={"preset": "mnist-mlp", "spec": {"layers": [dense(10)]}, "dataset": "digits"})
    assert two.status_code == 422 and "not spec and preset" in two.json()["detail"]
    assert api.get("/api/runs").json()["total"] == 0
