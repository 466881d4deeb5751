"""Explain a trained run's test predictions: attribution maps, first-layer filters and feature maps.

The web process reads the test sample (memory-mapped), normalizes it exactly as the trainer did
(app/engine/data.py), and asks the predictor process (app/runs/predict.py) for the maps: torch and captum
stay there (app/engine/attribution.py). The answers are small (H×W floats in [0, 1], bounded in size) and
the pictures are drawn here with numpy and PIL. The last few answers are kept (CACHE_SIZE), keyed by the
weights file and its mtime, so the two overlays of one image and the page that shows them cost one
computation.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, EngineUnavailable, InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.datasets import store as datasets_store
from app.engine.types import input_normalization
from app.runs import service as runs_service

METHODS = {"ig": "Integrated gradients", "saliency": "Saliency", "gradcam": "Grad-CAM"}
TARGETS = ("pred", "true")
CONV_TYPES = ("Conv2D",)
CACHE_SIZE = 32
MAX_LAYERS = 8  # conv layers whose feature maps are shown (the first ones)
MAX_CHANNELS = 16  # feature maps shown per layer
# An inferno-like colour scale for heat maps and activations: dark (nothing) → yellow (strongest).
_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def conv_layers(spec: dict[str, Any]) -> list[int]:
    """Indices of the spec's Conv2D layers (Grad-CAM explains through the last; filters are the first's)."""
    return [i for i, layer in enumerate(spec.get("layers") or []) if layer.get("type") in CONV_TYPES]


@dataclass(frozen=True)
class Subject:
    """A run with weights, and (when `index` is not None) one of its test samples ready for the predictor."""

    run_id: int
    dataset: str
    spec: dict[str, Any]
    weights: Path
    shape: list[int]
    class_names: list[str]
    conv: list[int]
    index: int | None = None
    label: int | None = None
    pixels: np.ndarray | None = None  # as stored (C, H, W)
    normalized: np.ndarray | None = None  # float32, as the model saw it in training
    baseline: list[float] | None = None  # a black image, per channel, in the model's units

    def name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    def message(self, **fields: Any) -> dict[str, Any]:
        message = {"spec": self.spec, "weights": str(self.weights), **fields}
        if self.normalized is not None:
            message.update(shape=self.shape, input=base64.b64encode(self.normalized.tobytes()).decode())
        return message

    def key(self, *parts: Any) -> tuple:
        return (str(self.weights), self.weights.stat().st_mtime_ns, self.index, *parts)


def subject(*, db_session: Session, run_id: int, index: int | None = None) -> Subject:
    """The run's weights and data set, checked; with `index`, that test sample read and normalized.

    404: no such run; 409: no weights yet; 422: not an image data set, or the index is outside the test split.
    """
    run = runs_service.get(db_session=db_session, run_id=run_id)
    try:
        weights = runs_service.artifact_file(db_session=db_session, run_id=run_id, name="weights")
    except NotFound as exc:
        raise Conflict(f"run {run_id} has no trained weights yet ({run.status}): explain it after it "
                       "completes") from exc
    data_dir = get_settings().data_dir
    info = datasets_registry.get_dataset_info(run.dataset, data_dir)
    shape = list(run.spec.get("input_shape") or info.input_shape)
    if info.kind != "image" or len(shape) != 3:
        raise InvalidInput(f"explanations are drawn over images; '{run.dataset}' holds {info.kind} data",
                           [{"field": "run_id", "message": "not an image model"}])
    found = Subject(run_id=run_id, dataset=run.dataset, spec=run.spec, weights=weights, shape=shape,
                    class_names=list(info.class_names), conv=conv_layers(run.spec))
    if index is None:
        db_session.commit()  # the predictor may take seconds: hold no database lock meanwhile
        return found
    datasets_registry.ensure_cached(run.dataset, data_dir, download=False)
    arrays = datasets_store.read_arrays(data_dir, run.dataset, mmap=True)
    x, y = arrays["x_test"], arrays["y_test"]
    if not 0 <= index < len(x):
        raise InvalidInput(f"index {index} is out of range: the test split of {run.dataset} has {len(x)} samples "
                           f"(0 to {len(x) - 1})", [{"field": "index", "message": "out of range"}])
    pixels = np.array(x[index])
    if list(pixels.shape) != shape:
        raise InvalidInput(f"the model reads {tuple(shape)} inputs but {run.dataset}'s samples are "
                           f"{tuple(pixels.shape)}", [{"field": "run_id", "message": "shape mismatch"}])
    mean, std = input_normalization(run.config.get("normalize", "auto"), shape, info.mean, info.std)
    channels = shape[0]
    mean_c = np.broadcast_to(np.asarray(mean if mean is not None else [0.0], np.float64), (channels,))
    std_c = np.broadcast_to(np.asarray(std if std is not None else [1.0], np.float64), (channels,))
    std_c = np.where(std_c > 0, std_c, 1.0)
    unit = 255.0 if pixels.dtype == np.uint8 else 1.0  # as app/engine/data.py: uint8 → [0, 1] first
    normalized = (pixels.astype(np.float64) / unit - mean_c[:, None, None]) / std_c[:, None, None]
    db_session.commit()
    return replace(found, index=index, label=int(y[index]), pixels=pixels,
                   normalized=np.ascontiguousarray(normalized, dtype=np.float32), baseline=(-mean_c / std_c).tolist())


def check_method(method: str, conv: list[int] | None = None) -> None:
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)} (got {method!r})",
                           [{"field": "method", "message": "unknown method"}])
    if method == "gradcam" and conv is not None and not conv:
        raise InvalidInput("Grad-CAM needs a convolutional layer (Conv2D) and this model has none: use method=ig or "
                           "method=saliency", [{"field": "method", "message": "no Conv2D layer"}])


# ---------- the predictor, with a small cache ----------

_cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()
# One explanation computed at a time, so the pictures of one panel, requested together, wait for the first
# to be computed and then share its answer instead of each asking the predictor (which answers one at a
# time anyway).
_compute_lock = threading.Lock()


def _cached(key: tuple) -> dict[str, Any] | None:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    return None


def _ask(key: tuple, message: dict[str, Any]) -> dict[str, Any]:
    from app.runs.predict import _predictor

    answer = _cached(key)
    if answer is not None:
        return answer
    if not _compute_lock.acquire(timeout=2 * get_settings().predict_timeout_s + 5):
        raise EngineUnavailable("the predictor is busy with other explanations: try again in a moment")
    try:
        answer = _cached(key)
        if answer is None:
            answer = _predictor.request(message)
            if "error" in answer:
                raise EngineUnavailable(f"the predictor could not explain this model: {answer['error']}")
            with _cache_lock:
                _cache[key] = answer
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
    finally:
        _compute_lock.release()
    return answer


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ---------- attributions ----------

def attributions(*, db_session: Session, run_id: int, index: int, method: str = "ig") -> dict[str, Any]:
    """The maps of one test image for its predicted and its true class, computed in one predictor request."""
    check_method(method)
    found = subject(db_session=db_session, run_id=run_id, index=index)
    check_method(method, found.conv)
    layer = found.conv[-1] if method == "gradcam" else None
    answer = _ask(found.key("attribute", method), found.message(
        op="attribute", method=method, targets=["pred", found.label], baseline=found.baseline, layer=layer))
    predicted = answer["predicted"]
    maps = {}
    for target, item in zip(TARGETS, answer["maps"], strict=True):
        values = item["map"]
        maps[target] = {"class_index": item["target"], "class_name": found.name(item["target"]),
                        "probability": item["probability"], "peak": item["peak"],
                        "height": len(values), "width": len(values[0]) if values else 0, "map": values}
    return {"run_id": run_id, "index": index, "method": method, "method_name": METHODS[method],
            "layer": layer, "correct": predicted == found.label,
            "predicted": {"index": predicted, "name": found.name(predicted), "probability": answer["probability"]},
            "true": {"index": found.label, "name": found.name(found.label)},
            "maps": maps, "_subject": found}


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise InvalidInput(f"target must be 'pred' or 'true' (got {target!r})",
                           [{"field": "target", "message": "unknown target"}])


def attribution_png(*, db_session: Session, run_id: int, index: int, method: str, target: str) -> bytes:
    check_target(target)
    result = attributions(db_session=db_session, run_id=run_id, index=index, method=method)
    return overlay_png(result["_subject"].pixels, np.asarray(result["maps"][target]["map"], dtype=np.float64))


# ---------- filters and feature maps ----------

def _conv_subject(db_session: Session, run_id: int, index: int | None) -> Subject:
    found = subject(db_session=db_session, run_id=run_id, index=index)
    if not found.conv:
        raise InvalidInput("this model has no convolutional layer (Conv2D): it has no filters or feature maps",
                           [{"field": "run_id", "message": "no Conv2D layer"}])
    return found


def filters(*, db_session: Session, run_id: int) -> dict[str, Any]:
    """The first Conv2D layer's filters (up to 64), each scaled to [0, 1]."""
    found = _conv_subject(db_session, run_id, None)
    answer = _ask(found.key("filters"), found.message(op="features", filters=found.conv[0]))
    return {"run_id": run_id, **answer["filters"], "shown": len(answer["filters"]["filters"])}


def feature_maps(*, db_session: Session, run_id: int, index: int) -> dict[str, Any]:
    """Each Conv2D layer's activations for one test image (the first 8 layers, 16 channels each)."""
    found = _conv_subject(db_session, run_id, index)
    answer = _ask(found.key("features"), found.message(op="features", layers=found.conv[:MAX_LAYERS],
                                                                     channels=MAX_CHANNELS))
    layers = [{**layer, "type": found.spec["layers"][layer["layer"]]["type"], "shown": len(layer["maps"])}
              for layer in answer["layers"]]
    return {"run_id": run_id, "index": index, "true": {"index": found.label, "name": found.name(found.label)},
            "layers": layers}


def feature_maps_png(*, db_session: Session, run_id: int, index: int, layer: int) -> bytes:
    result = feature_maps(db_session=db_session, run_id=run_id, index=index)
    chosen = next((item for item in result["layers"] if item["layer"] == layer), None)
    if chosen is None:
        shown = ", ".join(str(item["layer"]) for item in result["layers"])
        raise InvalidInput(f"layer {layer} is not a Conv2D layer with feature maps here: use one of {shown}",
                           [{"field": "layer", "message": "not a conv layer"}])
    return grid_png(np.asarray(chosen["maps"], dtype=np.float64)[:, None], colour=True, tile_px=64)


def filters_png(*, db_session: Session, run_id: int) -> bytes:
    return grid_png(np.asarray(filters(db_session=db_session, run_id=run_id)["filters"], dtype=np.float64), tile_px=48)


# ---------- pictures (numpy + PIL) ----------

def _colour(values: np.ndarray) -> np.ndarray:
    """[0, 1] values → RGB uint8 on the inferno-like scale."""
    position = np.clip(values, 0, 1) * (len(_STOPS) - 1)
    low = np.minimum(position.astype(int), len(_STOPS) - 2)
    frac = (position - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).round().astype(np.uint8)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def overlay_png(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    """The sample (grey or colour, upscaled like the gallery's) with `heat` ([0, 1]) blended over it."""
    from PIL import Image

    from app.datasets.render import preview_scale

    channels, height, width = pixels.shape
    values = np.asarray(pixels, dtype=np.float64)
    if pixels.dtype != np.uint8:
        lo, hi = values.min(), values.max()
        values = (values - lo) / (hi - lo or 1.0) * 255
    rgb = values if channels == 3 else np.repeat(values.mean(axis=0, keepdims=True), 3, axis=0)  # others: grey
    scale = preview_scale(height, width)
    size = (width * scale, height * scale)
    base = np.asarray(Image.fromarray(rgb.transpose(1, 2, 0).astype(np.uint8), "RGB").resize(size, Image.NEAREST),
                      dtype=np.float64)
    smooth = np.asarray(Image.fromarray(heat.astype(np.float32), "F").resize(size, Image.BILINEAR), dtype=np.float64)
    alpha = (0.85 * np.clip(smooth, 0, 1) ** 0.75)[..., None]  # faint evidence still shows
    blended = base * 0.85 * (1 - alpha) + _colour(smooth).astype(np.float64) * alpha
    return _png(Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), "RGB"))


def grid_png(tiles: np.ndarray, *, colour: bool = False, columns: int = 8, tile_px: int = 48) -> bytes:
    """(N, C, h, w) tiles in [0, 1] as one picture, `columns` a row: C = 3 is RGB, otherwise grey (or the heat
    scale with `colour`); each tile enlarged by a whole factor to about `tile_px`, with 2-pixel gaps."""
    from PIL import Image

    count, channels, height, width = tiles.shape
    scale = max(1, -(-tile_px // max(height, width)))
    th, tw, gap = height * scale, width * scale, 2
    cols = max(1, min(columns, count))
    rows = max(1, -(-count // cols))
    canvas = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 255, dtype=np.uint8)
    for n in range(count):
        tile = tiles[n]
        if channels == 3:
            rgb = (np.clip(tile.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
        elif colour:
            rgb = _colour(tile[0])
        else:
            rgb = np.repeat((np.clip(tile[0], 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        big = np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8))
        r, c = divmod(n, cols)
        top, left = gap + r * (th + gap), gap + c * (tw + gap)
        canvas[top:top + th, left:left + tw] = big
    return _png(Image.fromarray(canvas, "RGB"))


def public(result: dict[str, Any]) -> dict[str, Any]:
    """An attributions result without its private subject (for JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
