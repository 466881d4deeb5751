"""Conv1D and LayerNormalization, defined only in the layer registry, work end to end: the builder
offers them, validation counts what torch builds, they train, export, generate source and import from Keras."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from app.architectures.codegen import to_pytorch_source
from app.architectures.keras_import import KerasImportError, import_keras, import_keras_source
from app.architectures.spec import SpecError
from app.architectures.summary import summarize
from app.engine import export
from app.engine.build import build_model
from tests.conftest import LOCAL
from tests.engine.engine_testing import dataset, run, subset

HTMX = {"HX-Request": "true"}
SEQUENCE_SPEC = {"layers": [
    {"type": "Conv1D", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "LayerNormalization"},
    {"type": "Conv1D", "filters": 16, "kernel_size": 4, "strides": 2, "activation": "relu"},
    {"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]}
DIGITS_SPEC = {"layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"}, {"type": "LayerNormalization"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("steps", "kernel", "stride", "padding", "out_steps"), [
    (20, 3, 1, "valid", 18), (20, 3, 1, "same", 20), (20, 4, 2, "same", 10), (7, 4, 3, "same", 3),
    (7, 2, 3, "valid", 2), (5, 5, 1, "valid", 1)])
def test_conv1d_counts_what_torch_builds(steps, kernel, stride, padding, out_steps):
    spec = {"input_shape": [steps, 3], "layers": [
        {"type": "Conv1D", "filters": 8, "kernel_size": kernel, "strides": stride, "padding": padding}]}
    summary = summarize(spec)
    assert summary.output_shape == [out_steps, 8]
    assert summary.total_params == kernel * 3 * 8 + 8
    assert summary.flops == 2 * kernel * 3 * 8 * out_steps
    model = build_model(spec)
    assert n_params(model) == summary.total_params
    assert model(torch.randn(2, steps, 3)).shape == (2, out_steps, 8)


def test_conv1d_same_padding_puts_the_extra_step_at_the_end_like_keras():
    # T=6, kernel 4, stride 2 → 3 steps; Keras pads 1 step before and 2 after.
    spec = {"input_shape": [6, 1], "layers": [
        {"type": "Conv1D", "filters": 1, "kernel_size": 4, "strides": 2, "padding": "same", "use_bias": False}]}
    model = build_model(spec)
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(1.0)
    x = torch.arange(1.0, 7.0).reshape(1, 6, 1)
    # Windows over [0, 1, 2, 3, 4, 5, 6, 0, 0]: [0,1,2,3], [2,3,4,5], [4,5,6,0]
    assert model(x).flatten().tolist() == [6.0, 14.0, 15.0]


def test_conv1d_problems_name_the_layer_and_the_fix():
    with pytest.raises(SpecError) as caught:
        summarize({"input_shape": [1, 28, 28], "layers": [{"type": "Conv1D", "filters": 4, "kernel_size": 3}]})
    [detail] = caught.value.details
    assert (detail["index"], detail["type"]) == (0, "Conv1D") and caught.value.status_code == 422
    assert detail["message"].startswith("layer 1 (Conv1D): ") and "add Reshape([28, 28]) before it" in detail["message"]
    with pytest.raises(SpecError) as caught:
        summarize({"input_shape": [4, 2], "layers": [{"type": "Conv1D", "filters": 4, "kernel_size": 5}]})
    [detail] = caught.value.details
    assert (detail["index"], detail["type"], detail["field"]) == (0, "Conv1D", "kernel_size")
    assert detail["message"].startswith("layer 1 (Conv1D): ") and "does not fit" in detail["message"]
    assert 'use padding "same" or a smaller kernel' in detail["message"]
    with pytest.raises(SpecError) as caught:
        summarize({"input_shape": [4, 2], "layers": [{"type": "Conv1D", "filters": 4, "kernel_size": [3, 3]}]})
    [detail] = caught.value.details
    assert (detail["index"], detail["field"]) == (0, "kernel_size")
    assert detail["message"].startswith("layer 1 (Conv1D): 'kernel_size'")


@pytest.mark.parametrize("shape", [[6], [5, 6], [6, 3, 4]])
def test_layer_normalization_normalizes_each_samples_features(shape):
    spec = {"input_shape": shape, "layers": [{"type": "LayerNormalization", "epsilon": 1e-3}]}
    summary = summarize(spec)
    features = shape[0] if len(shape) == 3 else shape[-1]
    assert summary.total_params == 2 * features and summary.output_shape == shape
    model = build_model(spec)
    assert n_params(model) == summary.total_params
    x = torch.randn(4, *shape) * 3 + 1
    axis = 1 if len(shape) == 3 else -1  # images: each pixel over its channels (Keras's last axis)
    expected = (x - x.mean(axis, keepdim=True)) / torch.sqrt(x.var(axis, unbiased=False, keepdim=True) + 1e-3)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_generated_source_computes_what_the_built_model_computes(tmp_path):
    spec = {"input_shape": [9, 2], "layers": [
        {"type": "Conv1D", "filters": 4, "kernel_size": 4, "strides": 2, "padding": "same", "activation": "elu"},
        {"type": "LayerNormalization", "epsilon": 1e-4},
        {"type": "Conv1D", "filters": 3, "kernel_size": 2, "padding": "same", "use_bias": False},
        {"type": "Flatten"}, {"type": "Dense", "units": 2}]}
    (tmp_path / "generated.py").write_text(to_pytorch_source(spec))
    model = build_model(spec).eval()
    x = torch.randn(3, 9, 2)
    state = [p.detach().numpy().tolist() for p in model.parameters()]
    runner = (
        "import json, runpy, sys, torch\n"
        "namespace = runpy.run_path(sys.argv[1])\n"
        "model = namespace['Model']().eval()\n"
        "params, x = json.loads(sys.stdin.read())\n"
        "with torch.no_grad():\n"
        "    for parameter, value in zip(model.parameters(), params, strict=True):\n"
        "        parameter.copy_(torch.tensor(value))\n"
        "    print(json.dumps(model(torch.tensor(x)).tolist()))\n"
    )
    import json

    result = subprocess.run([sys.executable, "-c", runner, str(tmp_path / "generated.py")], capture_output=True,
                            text=True, input=json.dumps([state, x.tolist()]))
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(torch.tensor(json.loads(result.stdout)), expected, atol=1e-5)


def test_keras_code_with_conv1d_and_layer_normalization_imports():
    code = """
model = keras.Sequential([
    keras.Input(shape=(20, 1)),
    layers.Conv1D(32, 3, activation="relu"),
    layers.LayerNormalization(),
    layers.Conv1D(filters=16, kernel_size=(5,), strides=2, padding="same", kernel_initializer="he_normal"),
    layers.LayerNormalization(axis=-1, epsilon=1e-5, gamma_initializer="ones"),
    layers.Flatten(),
    layers.Dense(2, activation="softmax"),
])
"""
    spec, notes, _ = import_keras_source(code)
    assert spec == {"input_shape": [20, 1], "layers": [
        {"type": "Conv1D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "LayerNormalization"},
        {"type": "Conv1D", "filters": 16, "kernel_size": 5, "strides": 2, "padding": "same"},
        {"type": "LayerNormalization", "epsilon": 1e-5},
        {"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]}
    assert any("kernel_initializer" in note for note in notes) and any("gamma_initializer" in n for n in notes)
    summary = summarize(spec)
    assert summary.layers[0].output_shape == [18, 32] and summary.layers[0].params == 3 * 32 + 32
    assert summary.layers[1].params == 64
    assert n_params(build_model(spec)) == summary.total_params


@pytest.mark.parametrize(("layer", "words"), [
    ("layers.Conv1D(8, 3, dilation_rate=2)", "Conv1D(dilation_rate=2) is not supported"),
    ("layers.LayerNormalization(axis=1)", "LayerNormalization(axis=1) is not supported"),
    ("layers.Conv1D(8, 3, activation='swish')", "activation 'swish' is not supported"),
])
def test_keras_arguments_without_a_counterpart_are_refused(layer, words):
    with pytest.raises(KerasImportError) as caught:
        import_keras(f"model = Sequential([Input((20, 1)), {layer}])")
    assert words in caught.value.details[0]["message"]


def test_the_builder_offers_both_with_their_fields(client):
    html = client.get("/architectures/new").text
    menu = re.search(r'<select id="add_type".*?</select>', html, re.S).group(0)
    assert '<option value="Conv1D"' in menu and '<option value="LayerNormalization"' in menu
    form = {"name": "seq", "input_shape": "20, 1", "add_type": "Conv1D", "action": "add"}
    html = client.post("/architectures/editor", data=form, headers=HTMX).text
    for field, value in (("filters", "32"), ("kernel_size", "3"), ("strides", "1")):
        assert re.search(rf'name="layers-0-{field}" value="{value}"', html), field
    assert re.search(r'<select id="layers-0-padding".*?<option value="same"', html, re.S)
    assert "(18, 32)" in html and "128 params" in html  # 3 * 1 * 32 + 32
    form = {"name": "seq", "input_shape": "20, 1", "layers-0-type": "Conv1D", "layers-0-filters": "8",
            "layers-0-kernel_size": "3", "layers-0-strides": "1", "layers-0-padding": "same",
            "layers-0-activation": "relu", "layers-0-use_bias": ["0", "1"], "add_type": "LayerNormalization",
            "action": "add"}
    html = client.post("/architectures/editor", data=form, headers=HTMX).text
    assert 'name="layers-1-epsilon" value="0.001"' in html and "16 params" in html


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("conv1d")
    data = subset(dataset("sequence", tmp_path), 1000, 300)
    result, sink = run(tmp_path, SEQUENCE_SPEC, data, epochs=8, batch_size=32, seed=0,
                       optimizer={"name": "adam", "lr": 0.01})
    return tmp_path / "run", result, sink, data


def test_conv1d_with_layer_normalization_learns_the_sequence_task(sequence_run):
    _, result, sink, _ = sequence_run
    assert result.epochs_completed == 8
    losses = [event["train_loss"] for event in sink.of("epoch")]
    assert losses[-1] < losses[0]
    assert result.test_accuracy > 0.9  # chance is 0.5: the order of the pulses must be seen


def test_conv1d_model_exports_to_torchscript_and_onnx(sequence_run):
    directory, _, sink, data = sequence_run
    assert {a["name"] for a in sink.of("artifact")} == {"weights", "torchscript", "onnx"}
    from safetensors.torch import load_file

    model = build_model(SEQUENCE_SPEC, data.input_shape)
    model.load_state_dict(load_file(directory / "export" / export.WEIGHTS))
    model.eval()
    x = torch.randn(5, *data.input_shape)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)
        scripted = torch.jit.load(str(directory / "export" / export.TORCHSCRIPT))
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    path = directory / "export" / export.ONNX
    onnx.checker.check_model(onnx.load(str(path)))
    (out,) = ReferenceEvaluator(str(path)).run(None, {"input": x.numpy().astype(np.float32)})
    assert np.allclose(out, expected.numpy(), atol=1e-5)


def test_layer_normalization_trains_on_digits(tmp_path):
    data = subset(dataset("digits", tmp_path), 800, 300)
    result, sink = run(tmp_path, DIGITS_SPEC, data, epochs=5, batch_size=32, seed=0)
    assert result.epochs_completed == 5
    assert result.test_accuracy > 0.85  # chance is 0.1
    assert {a["name"] for a in sink.of("artifact")} == {"weights", "torchscript", "onnx"}
