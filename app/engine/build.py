"""Spec → nn.Module, with Keras semantics on PyTorch.

The spec arrives as a plain dict that `app.architectures.summary` has already validated. Each layer is
read by its kind in `app.layers.registry` (torch-free at import) and built by the kind's own `build`,
so the summary's shapes and counts and the module come from one definition.

The module returns LOGITS: a final softmax or sigmoid is not applied in `forward` but named in
`model.output_activation`, so the engine can use cross-entropy on logits (no double softmax)
and apply the activation itself when it needs probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.engine.types import EngineError
from app.layers import registry
from app.layers.base import BuildContext, BuildError


class SpecModel(nn.Module):
    """A sequential model: `layers[i]` is spec layer i (forward hooks on it see its output)."""

    def __init__(self, layers: list[nn.Module], output_activation: str | None, input_dtype: torch.dtype):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.output_activation = output_activation
        self.input_dtype = input_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def build_model(spec: dict[str, Any], input_shape: Sequence[int] | None = None, *,
                weights_root: Path | None = None, load_pretrained: bool = True) -> SpecModel:
    """Build the PyTorch module for a validated spec; `input_shape` (the data set's) wins over the spec's.

    `load_pretrained=False` builds backbones with random weights: for callers that load a whole
    checkpoint right after (no ImageNet download, no weights file needed).
    """
    shape = list(input_shape if input_shape is not None else spec.get("input_shape") or [])
    if not shape:
        raise EngineError("the model has no input shape: set input_shape in the spec or choose a data set")
    unknown = [raw.get("type") for raw in spec["layers"] if raw.get("type") not in registry.LAYER_TYPES]
    if unknown:
        raise EngineError(f"unknown layer type '{unknown[0]}'")
    layers = [registry.read_layer(raw) for raw in spec["layers"]]
    if not load_pretrained:  # backbones without a weights file or download: a checkpoint is loaded next
        layers = [layer.model_copy(update={"weights": "none"}) if "weights" in type(layer).model_fields else layer
                  for layer in layers]
    output_activation = registry.output_activation(layers)
    token_input = layers[0].token_input

    # Each layer's input size comes from running a zero sample through the layers built so far:
    # the shapes are PyTorch's own, not a second copy of the summary's formulas.
    probe = torch.zeros(1, *shape, dtype=torch.long if token_input else torch.float32)
    modules: list[nn.Module] = []
    for index, layer in enumerate(layers):
        is_last = index == len(layers) - 1
        activation = "linear" if is_last and output_activation is not None else getattr(layer, "activation", "linear")
        try:
            module = layer.build(tuple(probe.shape[1:]), BuildContext(activation, weights_root))
        except BuildError as exc:
            raise EngineError(str(exc)) from exc
        module.eval()
        with torch.no_grad():
            probe = module(probe)
        module.train()
        modules.append(module)
    model = SpecModel(modules, output_activation, torch.long if token_input else torch.float32)
    return model.train()
