"""The test set as the model sees it: the penultimate layer's activations, projected to 2-D with PCA.

At the end of training (`loop.train`, after the test evaluation) `emit_projection` takes up to
MAX_SAMPLES test samples (all of them when the split is that small, else a seeded choice), runs them
through the model with a forward pre-hook on the last `nn.Linear` (what goes INTO the classifier's
last Dense layer), centres those vectors and projects them on their first two principal components
(an exact SVD, with each component's sign fixed so the same model always draws the same picture).

The `projection` event: {"epoch", "count", "total" (test samples), "features" (the vectors' size),
"layer" (the spec layer index of that Dense, or null), "explained_variance" [pc1, pc2] (fractions),
"x", "y" (4 significant digits), "true", "pred" (class indices), "index" (test-split indices),
"class_names"}. A model without a Linear layer, or a test split under 3 samples, emits nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.data import DeviceData
from app.engine.losses import predictions
from app.engine.types import Sink

MAX_SAMPLES = 2000


def final_linear(model: nn.Module) -> tuple[nn.Linear, int | None] | None:
    """The model's last nn.Linear (in registration order: the classifier's last Dense) and its spec index."""
    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            found = module
    if found is None:
        return None
    layers = getattr(model, "layers", None)
    index = None
    if isinstance(layers, nn.ModuleList):
        index = next((i for i, layer in enumerate(layers) if any(m is found for m in layer.modules())), None)
    return found, index


def _sample(total: int, limit: int, seed: int) -> np.ndarray:
    if total <= limit:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:limit])


@torch.inference_mode()
def project_test_split(model: nn.Module, data: DeviceData, *, epoch: int, batch_size: int = 512,
                    max_samples: int = MAX_SAMPLES, seed: int = 0,
                    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                    ) -> dict[str, Any] | None:
    """The projection event's payload for the test split, or None (no Linear layer, too few samples)."""
    total = data.size("test")
    target = final_linear(model)
    if total < 3 or target is None:
        return None
    linear, layer_index = target
    chosen = _sample(total, max(3, min(max_samples, MAX_SAMPLES)), seed)
    x_all, y_all = data.splits["test"]
    index = torch.as_tensor(chosen, device=x_all.device)
    captured: list[torch.Tensor] = []
    handle = linear.register_forward_pre_hook(lambda _module, args: captured.append(args[0].detach().float().flatten(1)))
    preds = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(chosen), batch_size):
            batch = index[start:start + batch_size]
            with autocast():
                out = model(data.prepare(x_all[batch], fresh=True))
            preds.append(predictions(out.float()))
    finally:
        handle.remove()
        model.train(was_training)
    # Linear may be applied per time step (a Dense after a sequence layer): keep one vector per sample.
    features = torch.cat([c.reshape(len(p), -1) for c, p in zip(captured, preds, strict=True)]).double().cpu()
    centred = features - features.mean(dim=0, keepdim=True)
    _, singular, components = torch.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    # Fix each component's sign (SVD may flip it): its largest entry is positive.
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    coords = (centred @ components.T).numpy()
    if coords.shape[1] < 2:  # a one-feature layer: the second axis is zero
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    energy = float((singular ** 2).sum()) or 1.0
    explained = [round(float(s ** 2) / energy, 4) for s in singular[:2]] + [0.0] * max(0, 2 - len(singular))
    return {
        "epoch": epoch, "count": len(chosen), "total": total, "features": int(features.shape[1]),
        "layer": layer_index, "explained_variance": explained,
        "x": [_short(v) for v in coords[:, 0]], "y": [_short(v) for v in coords[:, 1]],
        "true": y_all[index].cpu().tolist(), "pred": torch.cat(preds).cpu().tolist(),
        "index": chosen.tolist(), "class_names": list(data.class_names),
    }


def emit_projection(model: nn.Module, data: DeviceData, sink: Sink, **kwargs: Any) -> None:
    """Emit the projection event; a failure is a warning in the log, never the run's failure."""
    try:
        payload = project_test_split(model, data, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a picture of the test set must not fail a trained run
        sink.emit("log", {"level": "warning", "message": f"the test-set projection failed: {type(exc).__name__}: {exc}"})
        return
    if payload is not None:
        sink.emit("projection", payload)


def _short(value: float) -> float:
    return float(f"{value:.4g}")
