"""A long-lived inference process: JSON lines in, JSON lines out (started by the web process).

Request:  {"spec", "weights" (safetensors path), "shape": [C,H,W], "input": base64 float32, "top_k"}
Answer:   {"indices": [...], "probabilities": [...]} or {"error": "..."}
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


def answer(request: dict) -> dict:
    model = _model(request["spec"], request["weights"])
    array = np.frombuffer(base64.b64decode(request["input"]), dtype=np.float32).reshape(request["shape"])
    with torch.inference_mode():
        logits = model(torch.from_numpy(array.copy())[None])
        activation = getattr(model, "output_activation", None)
        probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)
        values, indices = probs[0].topk(int(request.get("top_k", 5)))
    return {"indices": indices.tolist(), "probabilities": [round(v, 6) for v in values.tolist()]}


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
