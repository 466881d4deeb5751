"""app/engine/attribution.py on models trained for a moment on the digits: maps have the image's shape,
are finite and in [0, 1], and explain each class differently; filters and feature maps have their layers'
shapes; the predictor process answers the new ops over its JSON lines."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from app.engine import attribution
from app.engine.build import build_model

CNN = {"input_shape": [1, 8, 8], "layers": [
    {"type": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}
MLP = {"input_shape": [1, 8, 8], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.tensor(bunch.images / 16.0, dtype=torch.float32)[:, None], torch.tensor(bunch.target)


def _trained(spec: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(spec, load_pretrained=False)
    x, y = _digits()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for start in range(0, 1600, 64):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[start:start + 64]), y[start:start + 64]).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def cnn():
    return _trained(CNN)


@pytest.fixture(scope="module")
def mlp():
    return _trained(MLP)


@pytest.mark.parametrize("method", ["ig", "saliency", "gradcam"])
def test_maps_have_the_image_shape_are_finite_and_differ_between_classes(cnn, method):
    x, y = _digits()
    image = x[1700]
    answer = attribution.explain(cnn, image, method, ["pred", (int(y[1700]) + 1) % 10], layer=1)
    assert answer["predicted"] == int(cnn(image[None]).argmax())
    first, second = (np.array(m["map"]) for m in answer["maps"])
    assert [m["target"] for m in answer["maps"]] == [answer["predicted"], (int(y[1700]) + 1) % 10]
    for values in (first, second):
        assert values.shape == (8, 8)
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    assert first.max() == pytest.approx(1.0)  # scaled by its own maximum
    assert np.abs(first - second).max() > 0.05  # each class has its own evidence


def test_integrated_gradients_of_an_mlp_add_up_to_the_logit_difference(mlp):
    """IG's completeness: the attributions (before the absolute value) sum to f(x) - f(baseline); the map's
    peak is on pixels that matter, so it is far from zero for the predicted class."""
    x, _ = _digits()
    image = x[1710]
    values, peak = attribution.attribution_map(mlp, image, 3, "ig", steps=64)
    assert values.shape == (8, 8) and peak > 0
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(mlp).attribute(image[None], baselines=torch.zeros(1, 1, 8, 8), target=3, n_steps=64)
    with torch.no_grad():
        gap = float(mlp(image[None])[0, 3] - mlp(torch.zeros(1, 1, 8, 8))[0, 3])
    assert float(attr.sum()) == pytest.approx(gap, rel=0.05, abs=0.05)
    np.testing.assert_allclose(values * peak, attr[0].abs().sum(0).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_gradcam_needs_a_convolution(mlp):
    x, _ = _digits()
    with pytest.raises(ValueError, match="no 2-D convolution"):
        attribution.explain(mlp, x[0], "gradcam", ["pred"], layer=1)
    with pytest.raises(ValueError, match="unknown method"):
        attribution.explain(mlp, x[0], "lime", ["pred"])


def test_filters_have_the_first_conv_layers_shape(cnn):
    answer = attribution.filters(cnn, 0)
    values = np.array(answer["filters"])
    assert values.shape == (6, 1, 3, 3)
    assert answer["out_channels"] == 6 and answer["in_channels"] == 1 and answer["kernel"] == [3, 3]
    assert values.min() == 0 and values.max() == 1
    w = attribution._conv_module(cnn.layers[0]).weight.detach()[4, 0].numpy()  # the same order and pattern
    np.testing.assert_allclose(values[4, 0], (w - w.min()) / (w.max() - w.min()), atol=1e-4)
    second = attribution.filters(cnn, 1)  # 6 input channels: averaged to one picture per filter
    assert np.array(second["filters"]).shape == (4, 1, 3, 3) and second["in_channels"] == 6


def test_feature_maps_are_each_conv_layers_activations(cnn):
    x, _ = _digits()
    answer = attribution.feature_maps(cnn, x[5], [0, 1])
    first, second = answer["layers"]
    assert (first["layer"], first["channels"], first["height"], first["width"]) == (0, 6, 8, 8)
    assert (second["layer"], second["channels"], second["height"], second["width"]) == (1, 4, 6, 6)
    assert np.array(first["maps"]).shape == (6, 8, 8) and np.array(second["maps"]).shape == (4, 6, 6)
    with torch.no_grad():
        out = cnn.layers[0](x[5][None])[0, 2]
    if out.max() > out.min():
        expected = (out - out.min()) / (out.max() - out.min())
        np.testing.assert_allclose(np.array(first["maps"][2]), expected.numpy(), atol=1e-3)


def test_the_predictor_process_answers_attribute_and_features(cnn, tmp_path):
    weights = tmp_path / "model.safetensors"
    save_file(cnn.state_dict(), str(weights))
    x, _ = _digits()
    image = x[1700].numpy().astype(np.float32)
    common = {"spec": CNN, "weights": str(weights), "shape": [1, 8, 8],
              "input": base64.b64encode(image.tobytes()).decode()}
    requests = [{**common, "op": "attribute", "method": "gradcam", "targets": ["pred", 0], "layer": 1},
                {**common, "op": "features", "filters": 0, "layers": [0, 1]},
                {**common, "op": "explode"},
                {**common, "top_k": 2}]
    done = subprocess.run([sys.executable, "-m", "app.engine.predict_server"], check=True, capture_output=True,
                          input="".join(json.dumps(r) + "\n" for r in requests).encode(), timeout=120)
    cam, features, unknown, predicted = (json.loads(line) for line in done.stdout.decode().splitlines())
    assert cam["predicted"] == predicted["indices"][0] and np.array(cam["maps"][1]["map"]).shape == (8, 8)
    assert np.array(features["filters"]["filters"]).shape == (6, 1, 3, 3)
    assert [layer["layer"] for layer in features["layers"]] == [0, 1]
    assert "unknown op 'explode'" in unknown["error"]


def test_large_inputs_answer_bounded_maps():
    """A 96x96 colour input: attribution maps come back at most 64 on a side, feature maps at most 32."""
    spec = {"input_shape": [3, 96, 96], "layers": [
        {"type": "Conv2D", "filters": 20, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]}
    torch.manual_seed(0)
    model = build_model(spec, load_pretrained=False).eval()
    image = torch.rand(3, 96, 96)
    answer = attribution.explain(model, image, "gradcam", ["pred", 1], layer=0)
    assert np.array(answer["maps"][0]["map"]).shape == (64, 64)
    maps = attribution.feature_maps(model, image, [0])["layers"][0]
    assert (maps["channels"], maps["height"]) == (20, 96)
    assert np.array(maps["maps"]).shape == (attribution.MAX_CHANNELS, 32, 32)
    colour = attribution.filters(model, 0)
    assert np.array(colour["filters"]).shape == (20, 3, 3, 3)  # RGB filters stay RGB


def test_the_web_side_asks_within_the_engines_bounds():
    from app.runs import explain

    assert explain.MAX_CHANNELS <= attribution.MAX_CHANNELS and explain.MAX_LAYERS <= attribution.MAX_LAYERS
    assert set(explain.METHODS) == set(attribution.METHODS)
