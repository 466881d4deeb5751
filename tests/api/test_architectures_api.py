"""The architectures REST API: validation answers, 422s that name the layer, CRUD, export, presets."""

from __future__ import annotations

import pytest

MLP = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}
CNN = {"layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"},
    {"type": "Dense", "units": 64, "activation": "relu"}, {"type": "Dense", "units": 10}]}


def test_validate_reports_every_layer(client):
    body = client.post("/api/architectures/validate", json={"spec": MLP}).json()
    assert body["total_params"] == 101_770 and body["trainable_params"] == 101_770
    assert [(row["index"], row["type"], row["output_shape"], row["params"]) for row in body["layers"]] == [
        (0, "Flatten", [784], 0), (1, "Dense", [128], 100_480), (2, "Dense", [10], 1_290)]
    cnn = client.post("/api/architectures/validate", json={"spec": CNN, "input_shape": [3, 32, 32]}).json()
    assert cnn["total_params"] == 122_570
    assert [row["output_shape"] for row in cnn["layers"]][:5] == [[32, 30, 30], [32, 15, 15], [64, 13, 13],
                                                           [64, 6, 6], [64, 4, 4]]


def _dense(units, activation="relu"):
    return {"type": "Dense", "units": units, "activation": activation}


@pytest.mark.parametrize(("spec", "input_shape", "index", "needle"), [
    # wrong shape order (channels-last)
    ({"layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3}]}, [28, 28, 1], None, "channels-first"),
    # kernel larger than the input
    ({"layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 9}]}, [1, 5, 5], 0, "kernel"),
    # missing Flatten
    ({"layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3}, _dense(10)]}, [1, 8, 8], 1, "Flatten"),
    # negative units
    ({"layers": [{"type": "Flatten"}, _dense(-5)]}, [1, 8, 8], 1, "units"),
    # unknown layer type
    ({"layers": [{"type": "Flatten"}, {"type": "Dens", "units": 3}]}, [1, 8, 8], 1, "Dense"),
    # unknown activation
    ({"layers": [{"type": "Flatten"}, _dense(4, "relu6")]}, [1, 8, 8], 1, "relu6"),
    # over the parameter cap
    ({"layers": [{"type": "Flatten"}, _dense(200_000), _dense(2_000)]}, [1, 28, 28], None, "TRAINBOARD_MAX_PARAMS"),
    # not a spec at all
    ("not a spec", None, None, "spec"),
    # no layers
    ({"layers": []}, [1, 8, 8], None, "layer"),
])
def test_invalid_specs_get_422_with_a_layer_precise_message(client, spec, input_shape, index, needle):
    response = client.post("/api/architectures/validate", json={"spec": spec, "input_shape": input_shape})
    assert response.status_code == 422, response.text
    body = response.json()
    assert needle in body["detail"], body
    if index is not None:
        assert any(e.get("index") == index for e in body["errors"]), body["errors"]
        assert f"layer {index + 1}" in body["detail"]


def test_malformed_json_is_422_not_500(client):
    response = client.post("/api/architectures/validate", content=b'{"spec": [', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_import_keras_answers_spec_and_summary_and_errors_with_line(client):
    code = """model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(128, activation=\u2018relu\u2019),
    tf.keras.layers.Dense(10, activation=\u2018softmax\u2019)
])"""
    body = client.post("/api/architectures/import-keras", json={"code": code}).json()
    assert body["spec"]["input_shape"] == [1, 28, 28] and body["summary"]["total_params"] == 101_770
    bad = client.post("/api/architectures/import-keras", json={"code": "model = Sequential()\nmodel.add(Conv3D(4, 3))"})
    assert bad.status_code == 422 and "line 2" in bad.json()["detail"]


def test_imported_compile_and_fit_settings_launch_a_run_as_they_are(client):
    """Paste the tutorial's whole cell: the spec and the `training` answer are a complete POST /api/runs."""
    code = """model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(8, 8)),
    tf.keras.layers.Dense(32, activation='relu'),
    tf.keras.layers.Dense(10, activation='softmax')
])
model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.005, epsilon=1e-7),
              loss='sparse_categorical_crossentropy', metrics=['accuracy'])
model.fit(x_train, y_train, epochs=3, batch_size=16, validation_split=0.25)"""
    body = client.post("/api/architectures/import-keras", json={"code": code}).json()
    assert body["training"] == {"optimizer": {"name": "adam", "lr": 0.005, "eps": 1e-7}, "loss": "cross_entropy",
                                "epochs": 3, "batch_size": 16, "val_split": 0.25}
    assert body["notes"] == []  # compile and fit were read whole: nothing left out to note
    run = client.post("/api/runs", json={"spec": body["spec"], "dataset": "digits", "config": body["training"]})
    assert run.status_code == 201, run.text
    config = run.json()["config"]
    assert (config["epochs"], config["batch_size"], config["val_split"]) == (3, 16, 0.25)
    assert config["optimizer"]["lr"] == 0.005 and config["optimizer"]["eps"] == 1e-7


def test_crud_and_pytorch_export(client):
    created = client.post("/api/architectures", json={"name": "mlp", "spec": MLP})
    assert created.status_code == 201
    arch = created.json()
    assert arch["total_params"] == 101_770
    assert client.post("/api/architectures", json={"name": "mlp", "spec": MLP}).status_code == 409
    bad = client.post("/api/architectures", json={"name": "bad", "spec": {"layers": [_dense(-1)]}})
    assert bad.status_code == 422
    assert client.get("/api/architectures").json()["total"] == 1  # nothing half-saved
    updated = client.put(f"/api/architectures/{arch['id']}", json={"spec": {**MLP, "layers": MLP["layers"][:1] + [_dense(10)]}})
    assert updated.json()["total_params"] == 7_850
    source = client.get(f"/api/architectures/{arch['id']}/pytorch").text
    assert "class Mlp(nn.Module)" in source and "nn.Linear(784, 10)" in source
    compile(source, "model.py", "exec")
    assert client.delete(f"/api/architectures/{arch['id']}").status_code == 204
    assert client.get(f"/api/architectures/{arch['id']}").status_code == 404


def test_presets_by_name(client):
    presets = {p["name"]: p for p in client.get("/api/presets").json()}
    assert set(presets) >= {"mnist-mlp", "mnist-mlp-dropout", "cifar10-cnn", "mnist-lstm", "transfer-resnet18"}
    assert presets["mnist-mlp"]["total_params"] == 101_770
    assert presets["cifar10-cnn"]["total_params"] == 122_570
