"""The explanation endpoints over a digits run with weights: attribution maps for the predicted and the true
class, filters and feature maps of a CNN, their PNG pictures, and a clear 4xx for every bad request."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.core.config import get_settings
from app.runs import explain
from app.runs import predict as predict_service
from tests.runs.helpers import DIGITS_MLP, run_body

CNN = {"layers": [{"type": "Conv2D", "filters": 5, "kernel_size": 3, "padding": "same", "activation": "relu"},
                  {"type": "Conv2D", "filters": 3, "kernel_size": 3, "activation": "relu"},
                  {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture
def predictor():
    yield predict_service._predictor
    predict_service._predictor.close()
    explain.clear_cache()


def _run_with_weights(client, spec, *, weights: bool = True, weights_spec: dict | None = None) -> int:
    """A queued digits run given a weights artifact (seeded random weights: explaining needs only the file)."""
    import torch
    from safetensors.torch import save_file

    from app.core.db import session_scope
    from app.engine.build import build_model
    from app.runs.models import Artifact

    created = client.post("/api/runs", json=run_body(spec, dataset="digits"))
    assert created.status_code == 201, created.text
    run = created.json()
    if weights:
        torch.manual_seed(1)
        model = build_model({"input_shape": [1, 8, 8], **(weights_spec or run["spec"])}, load_pretrained=False)
        root = get_settings().artifacts_dir
        path = root / f"run-{run['id']}" / "model.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(path))
        with session_scope() as session:
            session.add(Artifact(run_id=run["id"], name="weights", path=str(path.relative_to(root)),
                                 bytes=path.stat().st_size))
    return run["id"]


def _png_size(response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content)).size


def test_mlp_integrated_gradients_for_the_predicted_and_the_true_class(client, predictor):
    run_id = _run_with_weights(client, DIGITS_MLP)
    answer = client.get(f"/api/runs/{run_id}/attributions", params={"index": 7})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["method"] == "ig" and body["index"] == 7 and body["layer"] is None
    from app.datasets import store

    true_index = body["true"]["index"]
    assert true_index == int(store.read_arrays(get_settings().data_dir, "digits")["y_test"][7])
    assert body["maps"]["true"]["class_index"] == true_index
    assert body["maps"]["pred"]["class_index"] == body["predicted"]["index"]
    assert body["correct"] == (true_index == body["predicted"]["index"])
    for target in ("pred", "true"):
        values = np.array(body["maps"][target]["map"])
        assert values.shape == (8, 8) and np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    one = client.get(f"/api/runs/{run_id}/attributions", params={"index": 7, "method": "saliency", "target": "true"})
    assert one.status_code == 200 and list(one.json()["maps"]) == ["true"]
    # The overlay: the 8x8 image enlarged like the gallery's samples (112 px), in colour.
    picture = client.get(f"/api/runs/{run_id}/attributions.png", params={"index": 7, "target": "true"})
    assert _png_size(picture) == (112, 112)
    assert Image.open(io.BytesIO(picture.content)).mode == "RGB"


def test_cnn_gradcam_filters_and_feature_maps(client, predictor):
    run_id = _run_with_weights(client, CNN)
    cam = client.get(f"/api/runs/{run_id}/attributions", params={"index": 3, "method": "gradcam"})
    assert cam.status_code == 200, cam.text
    assert cam.json()["layer"] == 1  # the last Conv2D
    assert np.array(cam.json()["maps"]["pred"]["map"]).shape == (8, 8)

    filters = client.get(f"/api/runs/{run_id}/filters").json()
    assert (filters["layer"], filters["out_channels"], filters["in_channels"], filters["kernel"]) == (0, 5, 1, [3, 3])
    assert np.array(filters["filters"]).shape == (5, 1, 3, 3)
    # 5 tiles of 3x3 enlarged 16x (48 px), one row, 2-px gaps.
    assert _png_size(client.get(f"/api/runs/{run_id}/filters.png")) == (5 * 50 + 2, 50 + 2)

    maps = client.get(f"/api/runs/{run_id}/feature-maps", params={"index": 3}).json()
    assert [(m["layer"], m["type"], m["channels"], m["height"], m["width"]) for m in maps["layers"]] == [
        (0, "Conv2D", 5, 8, 8), (1, "Conv2D", 3, 6, 6)]
    # 3 channels of 6x6 enlarged 11x (66 px).
    assert _png_size(client.get(f"/api/runs/{run_id}/feature-maps.png", params={"index": 3, "layer": 1})) == (
        3 * 68 + 2, 68 + 2)
    bad_layer = client.get(f"/api/runs/{run_id}/feature-maps.png", params={"index": 3, "layer": 2})
    assert bad_layer.status_code == 422 and "use one of 0, 1" in bad_layer.json()["detail"]


@pytest.mark.parametrize(("params", "message"), [
    ({"index": 360}, "index 360 is out of range: the test split of digits has 360 samples"),
    ({"index": -1}, "index"),
    ({"index": 99_999_999_999}, "index"),
    ({}, "index"),
    ({"index": 0, "method": "lime"}, "method must be one of ig, saliency, gradcam"),
    ({"index": 0, "method": "gradcam"}, "Grad-CAM needs a convolutional layer (Conv2D)"),
    ({"index": 0, "target": "other"}, "target must be 'pred' or 'true'"),
])
def test_bad_requests_are_422_with_what_to_fix(client, predictor, params, message):
    run_id = _run_with_weights(client, DIGITS_MLP)
    answer = client.get(f"/api/runs/{run_id}/attributions", params=params)
    assert answer.status_code == 422, answer.text
    assert message in str(answer.json()["detail"])


def test_no_weights_no_run_and_no_conv_layer(client, predictor):
    queued = _run_with_weights(client, DIGITS_MLP, weights=False)
    answer = client.get(f"/api/runs/{queued}/attributions", params={"index": 0})
    assert answer.status_code == 409 and "no trained weights yet" in answer.json()["detail"]
    assert client.get("/api/runs/999999/attributions", params={"index": 0}).status_code == 404
    mlp = _run_with_weights(client, DIGITS_MLP)
    for path in ("filters", "feature-maps?index=0", "filters.png"):
        answer = client.get(f"/api/runs/{mlp}/{path}")
        assert answer.status_code == 422, (path, answer.text)
        assert "no convolutional layer (Conv2D)" in answer.json()["detail"]


def test_one_computation_serves_the_panel_and_both_overlays(client, predictor, monkeypatch):
    run_id = _run_with_weights(client, CNN)
    calls = []
    request = predictor.request
    monkeypatch.setattr(predictor, "request", lambda message, timeout=None: calls.append(message["op"]) or request(
        message, timeout))
    for target in ("pred", "true", "pred"):
        assert client.get(f"/api/runs/{run_id}/attributions.png", params={"index": 9, "target": target}).status_code == 200
    assert client.get(f"/api/runs/{run_id}/attributions", params={"index": 9}).status_code == 200
    for layer in (0, 1):
        assert client.get(f"/api/runs/{run_id}/feature-maps.png", params={"index": 9, "layer": layer}).status_code == 200
    assert calls == ["attribute", "features"]
    client.get(f"/api/runs/{run_id}/attributions", params={"index": 10})  # another image: computed
    assert calls == ["attribute", "features", "attribute"]


def test_weights_the_model_cannot_load_are_a_503_with_the_reason(client, predictor):
    wider = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"},
                        {"type": "Dense", "units": 10, "activation": "softmax"}]}
    run_id = _run_with_weights(client, DIGITS_MLP, weights_spec=wider)
    answer = client.get(f"/api/runs/{run_id}/attributions", params={"index": 0})
    assert answer.status_code == 503, answer.text
    assert "the predictor could not explain this model" in answer.json()["detail"]
    assert "size mismatch" in answer.json()["detail"]


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_overlays_draw_grey_colour_and_other_images(channels):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (channels, 10, 12), dtype=np.uint8)
    heat = np.zeros((10, 12))
    heat[2, 3] = 1.0
    picture = np.asarray(Image.open(io.BytesIO(explain.overlay_png(pixels, heat))))
    assert picture.shape == (100, 120, 3)  # enlarged 10x like the gallery's previews (112 px or more)
    cold = picture[80:, 100:].astype(int)  # far from the hot pixel: the image, dimmed, no colour added
    if channels != 3:
        assert (cold[..., 0] == cold[..., 2]).all()
    hot = picture[2 * 10 + 5, 3 * 10 + 5].astype(int)
    assert hot[0] > 200 and hot[0] - hot[2] > 80  # yellow
