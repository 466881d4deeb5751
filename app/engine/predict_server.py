"""A long-lived inference process: JSON lines in, JSON lines out (started by the web process).

Request:  {"op": "predict" (the default), "spec", "weights" (safetensors path), "shape": [C,H,W],
           "input": base64 float32, "top_k"}
Answer:   {"indices": [...], "probabilities": [...]} or {"error": "..."}

The other ops (app/engine/attribution.py, where the answers are described):
  {"op": "attribute", "spec", "weights", "shape", "input", "method": "ig"|"saliency"|"gradcam",
   "targets": [class index or "pred", ...], "baseline": [one value per channel] (ig), "layer" (gradcam)}
  {"op": "features", "spec", "weights", "filters": layer index or null, "layers": [layer indices],
   "channels" (per layer, at most attribution.MAX_CHANNELS), "shape" and "input" (with "layers")}
"""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from app.engine.build import build_model

_cache: dict[tuple[str, float], torch.nn.Module] = {}


def _model(spec: dict, weights: str) -> torch.nn.Module:
    key = (weights, os.path.getmtime(weights))
    if key not in _cache:
        _cache.clear()  # keep one model in memory; people predict with one run at a time
        model = build_model(spec, load_pretrained=False)  # the saved weights include the backbone
        model.load_state_dict(load_file(weights))  # safetensors: no pickle involved
        _cache[key] = model.eval()
    return _cache[key]


def _input(request: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(request["input"]), dtype=np.float32).reshape(request["shape"])


def answer(request: dict) -> dict:
    op = request.get("op", "predict")
    if op not in OPS:
        return {"error": f"unknown op {op!r}: use one of {', '.join(OPS)}"}
    model = _model(request["spec"], request["weights"])
    if op == "attribute":
        return _attribute(model, request)
    if op == "features":
        return _features(model, request)
    array = _input(request)
    with torch.inference_mode():
        logits = model(torch.from_numpy(array.copy())[None])
        activation = getattr(model, "output_activation", None)
        probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)
        values, indices = probs[0].topk(int(request.get("top_k", 5)))
    return {"indices": indices.tolist(), "probabilities": [round(v, 6) for v in values.tolist()]}


def _attribute(model: torch.nn.Module, request: dict) -> dict:
    from app.engine import attribution  # captum loads on the first explanation, not with every predictor

    image = torch.from_numpy(_input(request).copy())
    baseline = request.get("baseline")
    if baseline is not None:
        baseline = torch.tensor(baseline, dtype=torch.float32).reshape(-1, 1, 1).expand_as(image)
    return attribution.explain(model, image, request["method"], request["targets"], baseline=baseline,
                               layer=request.get("layer"),
                               steps=max(1, min(int(request.get("steps", attribution.IG_STEPS)), 256)))


def _features(model: torch.nn.Module, request: dict) -> dict:
    from app.engine import attribution

    reply: dict = {}
    if request.get("filters") is not None:
        reply["filters"] = attribution.filters(model, int(request["filters"]))
    if request.get("layers"):
        image = torch.from_numpy(_input(request).copy())
        channels = min(int(request.get("channels", attribution.MAX_CHANNELS)), attribution.MAX_CHANNELS)
        reply.update(attribution.feature_maps(model, image, [int(i) for i in request["layers"]], channels=channels))
    return reply


OPS = ("predict", "attribute", "features")


def main() -> int:
    torch.set_num_threads(1)
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as exc:  # report and keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
