"""Why a model called an image what it did: attribution maps, feature maps and first-layer filters.

Run by the predictor process (app/engine/predict_server.py, ops "attribute" and "features"), never by the
web process. Every map comes back small and bounded: H×W floats in [0, 1], at most MAX_SIDE on a side.

- Integrated gradients (captum `IntegratedGradients`): the gradient of the class's logit averaged along the
  straight path from a baseline (a black image, in the model's normalized units) to the image, times the
  difference; the map is its absolute value summed over channels.
- Saliency (captum `Saliency`): the absolute gradient of the class's logit, summed over channels.
- Grad-CAM (captum `LayerGradCam` on the last Conv2D layer): that layer's activations weighted by the mean
  gradient of each channel, ReLU'd (only evidence for the class), upsampled bilinearly to the image.

Each map is divided by its own maximum, so the brightest pixel is 1; `peak` keeps the scale it had.
Maps are computed against logits, so a softmax's competition between classes does not hide the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

METHODS = ("ig", "saliency", "gradcam")
MAX_SIDE = 64  # maps larger than this are average-pooled down (a 224-px backbone input still answers small)
FEATURE_SIDE = 32  # feature maps likewise (up to MAX_LAYERS x MAX_CHANNELS of them in one answer)
MAX_CHANNELS = 16  # feature maps per layer
MAX_LAYERS = 8  # conv layers whose feature maps are returned
MAX_FILTERS = 64  # first-layer filters returned
IG_STEPS = 32  # integration steps (tiny models: milliseconds; one batch of IG_STEPS images)


def _forward(model: nn.Module, probe: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's logits, as a two-column tensor when the model has a single (sigmoid) output, so class 0
    of a binary model is "the logit's negative" and both classes can be explained."""
    with torch.no_grad():
        outputs = model(probe).shape[-1]
    if outputs != 1:
        return model

    def two_columns(x: torch.Tensor) -> torch.Tensor:
        logit = model(x)
        return torch.cat([-logit, logit], dim=-1)

    return two_columns


def _conv_module(layer: nn.Module) -> nn.Conv2d:
    conv = next((m for m in layer.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(layer).__name__} has no 2-D convolution")
    return conv


def _shrink(maps: torch.Tensor, max_side: int = MAX_SIDE) -> torch.Tensor:
    """(..., H, W) → at most max_side on either side (average pooled)."""
    height, width = maps.shape[-2:]
    if height <= max_side and width <= max_side:
        return maps
    size = (min(height, max_side), min(width, max_side))
    lead = maps.shape[:-2]
    return F.adaptive_avg_pool2d(maps.reshape(-1, 1, height, width), size).reshape(*lead, *size)


def _unit(values: torch.Tensor) -> tuple[np.ndarray, float]:
    """Divide a non-negative map by its maximum: (map in [0, 1], the maximum); an all-zero map stays zero."""
    values = torch.nan_to_num(values.detach().float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    peak = float(values.max()) if values.numel() else 0.0
    return (values / peak if peak > 0 else values).numpy(), peak


def _min_max(values: torch.Tensor) -> np.ndarray:
    """Each leading-index slice scaled to [0, 1] by its own min and max (flat slices: 0)."""
    flat = values.detach().float().reshape(values.shape[0], -1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
    return ((flat - lo) / span).reshape(values.shape).numpy()


def attribution_map(model: nn.Module, image: torch.Tensor, target: int, method: str, *,
                    baseline: torch.Tensor | None = None, layer: int | None = None,
                    steps: int = IG_STEPS) -> tuple[np.ndarray, float]:
    """One class's map for one normalized image (C, H, W): (H×W in [0, 1], its maximum before scaling).

    `layer` (Grad-CAM only): the index in `model.layers` of the convolution to explain through.
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    model.eval()
    inputs = image[None].float().clone().requires_grad_(True)
    forward = _forward(model, inputs.detach())
    if method == "ig":
        base = torch.zeros_like(inputs) if baseline is None else baseline.reshape(1, *image.shape).expand_as(inputs)
        attr = IntegratedGradients(forward).attribute(inputs, baselines=base.contiguous(), target=target,
                                                      n_steps=steps, internal_batch_size=steps)
        values = attr[0].abs().sum(dim=0)
    elif method == "saliency":
        values = Saliency(forward).attribute(inputs, target=target, abs=True)[0].sum(dim=0)
    else:
        if layer is None:
            raise ValueError("Grad-CAM needs a Conv2D layer to explain through")
        module = model.layers[layer]
        _conv_module(module)
        cam = LayerGradCam(forward, module).attribute(inputs, target=target, relu_attributions=True)
        values = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")[0, 0]
    return _unit(_shrink(values))


def _rounded(array: np.ndarray, digits: int = 4) -> list:
    return np.round(array.astype(np.float64), digits).tolist()


def explain(model: nn.Module, image: torch.Tensor, method: str, targets: Sequence[int | str], *,
            baseline: torch.Tensor | None = None, layer: int | None = None, steps: int = IG_STEPS) -> dict[str, Any]:
    """The prediction for `image` and one map per target ("pred" is the predicted class)."""
    model.eval()
    with torch.no_grad():
        logits = model(image[None].float())[0]
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits)[0]
        probs = torch.stack([1 - p, p])
    else:
        probs = torch.sigmoid(logits) if getattr(model, "output_activation", None) == "sigmoid" else logits.softmax(-1)
    predicted = int(probs.argmax())
    maps = []
    for target in targets:
        index = predicted if target == "pred" else int(target)
        if not 0 <= index < len(probs):
            raise ValueError(f"class {index} is out of range: the model has {len(probs)} classes")
        values, peak = attribution_map(model, image, index, method, baseline=baseline, layer=layer, steps=steps)
        maps.append({"target": index, "probability": round(float(probs[index]), 6), "peak": peak,
                     "map": _rounded(values)})
    return {"predicted": predicted, "probability": round(float(probs[predicted]), 6), "method": method,
            "layer": layer, "maps": maps}


def filters(model: nn.Module, layer: int, limit: int = MAX_FILTERS) -> dict[str, Any]:
    """The weights of the convolution in `model.layers[layer]`, each filter scaled to [0, 1] by its own min
    and max: one channel (grey) per filter, or three (RGB) when the layer reads an RGB image; other input
    widths are averaged over their channels."""
    weight = _conv_module(model.layers[layer]).weight.detach().float()
    out_channels, in_channels, kh, kw = weight.shape
    shown = weight[:limit]
    if in_channels not in (1, 3):
        shown = shown.mean(dim=1, keepdim=True)
    return {"layer": layer, "out_channels": out_channels, "in_channels": in_channels, "kernel": [kh, kw],
            "filters": _rounded(_min_max(shown))}


def feature_maps(model: nn.Module, image: torch.Tensor, layers: Sequence[int], *,
                 channels: int = MAX_CHANNELS, max_side: int = FEATURE_SIDE) -> dict[str, Any]:
    """The activations of each listed layer (its output, after its activation) for one image: the first
    `channels` channels of each, each scaled to [0, 1] by its own min and max (and pooled to at most
    `max_side` on a side)."""
    layers = list(layers)[:MAX_LAYERS]
    outputs: dict[int, torch.Tensor] = {}
    hooks = []
    for index in layers:
        _conv_module(model.layers[index])
        hooks.append(model.layers[index].register_forward_hook(
            lambda _m, _i, out, index=index: outputs.__setitem__(index, out.detach())))
    model.eval()
    try:
        with torch.no_grad():
            model(image[None].float())
    finally:
        for hook in hooks:
            hook.remove()
    answer = []
    for index in layers:
        out = outputs[index][0]
        if out.ndim != 3:
            raise ValueError(f"layer {index} gives {tuple(out.shape)}, not (channels, height, width)")
        kept = _shrink(out[:channels], max_side)
        answer.append({"layer": index, "channels": int(out.shape[0]), "height": int(out.shape[1]),
                       "width": int(out.shape[2]), "maps": _rounded(_min_max(kept), 3)})
    return {"layers": answer}
