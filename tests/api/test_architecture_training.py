"""Training settings saved with an architecture (e.g. its Keras compile/fit calls): stored and checked
like a run's config, and the defaults of a run of it that leaves them out."""

from __future__ import annotations

import pytest

from tests.conftest import LOCAL

KERAS = """model = tf.keras.Sequential([
    tf.keras.layers.Flatten(input_shape=(8, 8)),
    tf.keras.layers.Dense(32, activation="relu"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=128, epochs=2, validation_split=0.1)
"""
SMALL = {"input_shape": [1, 8, 8], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10}]}
IMPORTED = {"optimizer": {"name": "rmsprop", "lr": 0.001}, "loss": "cross_entropy", "epochs": 2,
            "batch_size": 128, "val_split": 0.1}


@pytest.fixture
def api(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
        yield client


def save_imported(api, name: str = "digits mlp") -> dict:
    imported = api.post("/api/architectures/import-keras", json={"code": KERAS}).json()
    assert imported["training"] == IMPORTED
    response = api.post("/api/architectures", json={"name": name, "spec": imported["spec"],
                                                    "training": imported["training"]})
    assert response.status_code == 201, response.text
    return response.json()


def test_settings_are_stored_with_the_architecture_as_given(api):
    saved = save_imported(api)
    assert saved["training"] == IMPORTED  # only what was given: the schema's defaults stay defaults
    assert api.get(f"/api/architectures/{saved['id']}").json()["training"] == IMPORTED
    assert api.get("/api/architectures").json()["items"][0]["training"] == IMPORTED

    renamed = api.put(f"/api/architectures/{saved['id']}", json={"name": "renamed"}).json()
    assert renamed["training"] == IMPORTED  # left out: kept
    changed = api.put(f"/api/architectures/{saved['id']}", json={"training": {"epochs": "7"}}).json()
    assert changed["training"] == {"epochs": 7}
    cleared = api.put(f"/api/architectures/{saved['id']}", json={"training": {}}).json()
    assert cleared["training"] == {}
    plain = api.post("/api/architectures", json={"name": "plain", "spec": SMALL})
    assert plain.json()["training"] == {}


@pytest.mark.parametrize("training, needle", [
    ({"epochs": 0}, "greater than or equal to 1"),
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, "adam has no setting momentum"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_settings_are_refused_like_a_runs_and_nothing_is_saved(api, training, needle):
    response = api.post("/api/architectures", json={"name": "bad", "spec": SMALL, "training": training})
    assert response.status_code == 422, response.text
    assert needle in response.text and "training" in response.text
    assert api.get("/api/architectures").json()["total"] == 0


def test_a_run_of_the_architecture_starts_from_its_saved_settings(api):
    saved = save_imported(api)
    run = api.post("/api/runs", json={"architecture_id": saved["id"], "dataset": "digits"})
    assert run.status_code == 201, run.text
    config = run.json()["config"]
    assert config["optimizer"] == {"name": "rmsprop", "lr": 0.001}
    assert (config["epochs"], config["batch_size"], config["val_split"], config["loss"]) == (2, 128, 0.1, "cross_entropy")
    assert run.json()["epochs_total"] == 2

    # What the body gives wins, a section as a whole; the saved settings fill in the rest.
    given = api.post("/api/runs", json={"architecture_id": saved["id"], "dataset": "digits",
                                        "config": {"epochs": 3, "optimizer": {"name": "sgd", "momentum": 0.9}}})
    config = given.json()["config"]
    assert config["epochs"] == 3 and config["batch_size"] == 128
    assert config["optimizer"] == {"name": "sgd", "lr": 0.001, "momentum": 0.9}

    # Runs of a spec or a preset are not touched by it.
    spec = api.post("/api/runs", json={"spec": saved["spec"], "dataset": "digits"}).json()["config"]
    assert (spec["epochs"], spec["batch_size"], spec["optimizer"]["name"]) == (5, 32, "adam")


def test_saved_settings_over_a_lowered_limit_get_a_422_that_says_which(api, monkeypatch):
    from app.core.config import get_settings

    saved = api.post("/api/architectures", json={"name": "long", "spec": SMALL, "training": {"epochs": 40}}).json()
    monkeypatch.setenv("TRAINBOARD_MAX_EPOCHS", "20")
    get_settings.cache_clear()
    try:
        refused = api.post("/api/runs", json={"architecture_id": saved["id"], "dataset": "digits"})
        assert refused.status_code == 422, refused.text
        assert "the settings saved with architecture" in refused.json()["detail"]
        assert "epochs = 40 is over the limit of 20" in refused.json()["detail"]
        assert refused.json()["errors"][0]["field"] == "config.epochs"
        fine = api.post("/api/runs", json={"architecture_id": saved["id"], "dataset": "digits", "config": {"epochs": 4}})
        assert fine.status_code == 201, fine.text
    finally:
        monkeypatch.delenv("TRAINBOARD_MAX_EPOCHS")
        get_settings.cache_clear()
