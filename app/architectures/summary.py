"""Shapes, parameter counts, FLOPs and activation memory of a spec, from formulas alone.

Pure Python on purpose (no torch, not even indirectly): the web process validates a spec in
well under a millisecond per layer, and nothing is allocated for a model that will be refused.

Conventions:
- Shapes are channels-first and leave out the batch axis: (C, H, W), (T, F), (F,) or (T,).
- Parameter counts are what PyTorch's `module.parameters()` reports for the module that
  `app.engine.build.build_model` builds. That differs from Keras by design in two places:
  PyTorch recurrent layers carry two bias vectors (b_ih and b_hh), so LSTM(u) on F features
  has 4 * (u*F + u*u + 2u) parameters, not Keras's 4 * (u*F + u*u + u); and BatchNorm's running
  mean and variance are buffers, not parameters (2 * C parameters, not 4 * C).
- FLOPs are per sample and count 2 x multiply-accumulates of matrix products and convolutions,
  as `torch.utils.flop_counter` does; bias adds, activations, pooling and normalization are not
  counted (they are small next to the products). Pretrained backbones use FLOPs measured at
  224x224, scaled by the input's area: an approximation, exact only at 224x224.
- Activation bytes are per sample: every layer's output as float32, summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from app.architectures.spec import ArchitectureSpec, SpecError, layer_label, parse_spec, problem
from app.layers import registry
from app.layers.base import Out, ShapeProblem


class LayerSummary(BaseModel):
    index: int  # 0-based position in spec["layers"]; the UI shows index + 1
    type: str
    output_shape: list[int]
    params: int
    trainable_params: int
    flops: int
    activation_bytes: int
    description: str


class Summary(BaseModel):
    input_shape: list[int]
    input_dtype: str  # "float32", or "int64" when the model starts with an Embedding
    output_shape: list[int]
    # "softmax" | "sigmoid" | None: the model's final activation, which the engine applies to
    # the logits that the built module returns.
    output_activation: str | None
    total_params: int
    trainable_params: int
    frozen_params: int
    flops: int
    activation_bytes: int
    layers: list[LayerSummary]


def summarize(
    spec: ArchitectureSpec | dict,
    input_shape: Sequence[int] | None = None,
    *,
    max_params: int | None = None,
    max_activation_bytes: int | None = None,
) -> Summary:
    """Infer every layer's output shape, params and cost; SpecError lists what is wrong, by layer.

    `input_shape`, when given (usually the data set's), wins over the spec's own input_shape.
    """
    parsed = parse_spec(spec)
    shape_source = list(input_shape) if input_shape is not None else parsed.input_shape
    if not shape_source:
        raise SpecError([problem(None, None, "input_shape", (
            "no input shape: set input_shape in the spec, channels first (e.g. [1, 28, 28] for MNIST), "
            "or choose a data set"))])
    if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in shape_source):
        raise SpecError([problem(None, None, "input_shape", (
            f"input_shape must hold positive whole numbers, got {shape_source!r}"))])
    shape = tuple(shape_source)
    _check_channels_last(shape)

    problems: list[dict[str, Any]] = []
    layers: list[LayerSummary] = []
    for index, layer in enumerate(parsed.layers):
        try:
            out = layer.infer(shape, index)
        except ShapeProblem as exc:
            problems.append(problem(index, layer.type, exc.field, f"{layer_label(index, layer.type)}: {exc.message}"))
            if exc.recover is None:
                break  # later shapes are unknowable; their problems would only be noise
            out = Out(exc.recover)
        shape = out.shape
        trainable = out.params if out.trainable is None else out.trainable
        elements = math.prod(shape)
        layers.append(LayerSummary(
            index=index, type=layer.type, output_shape=list(shape), params=out.params,
            trainable_params=trainable, flops=out.flops, activation_bytes=4 * elements,
            description=layer.describe(),
        ))
    if problems:
        raise SpecError(problems)

    total = sum(item.params for item in layers)
    trainable = sum(item.trainable_params for item in layers)
    activation_bytes = sum(item.activation_bytes for item in layers)
    _check_caps(total, activation_bytes, max_params, max_activation_bytes)
    return Summary(
        input_shape=list(shape_source),
        input_dtype="int64" if parsed.layers[0].token_input else "float32",
        output_shape=list(shape),
        output_activation=registry.output_activation(parsed.layers),
        total_params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        flops=sum(item.flops for item in layers),
        activation_bytes=activation_bytes,
        layers=layers,
    )


def _check_channels_last(shape: tuple[int, ...]) -> None:
    # (28, 28, 1) and (32, 32, 3) are what Keras tutorials write; channels-first images almost
    # never have 1-4 columns and many channels, so this guess is safe.
    if len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4:
        h, w, c = shape
        raise SpecError([problem(None, None, "input_shape", (
            f"input_shape looks channels-last (H, W, C) = ({h}, {w}, {c}); Trainboard uses channels-first: "
            f"use [{c}, {h}, {w}]"))])


def _check_caps(total: int, activation_bytes: int, max_params: int | None, max_activation_bytes: int | None) -> None:
    problems = []
    if max_params is not None and total > max_params:
        problems.append(problem(None, None, None, (
            f"the model has {total:,} parameters, over the limit of {max_params:,} (TRAINBOARD_MAX_PARAMS): "
            "use fewer units or filters")))
    if max_activation_bytes is not None and activation_bytes > max_activation_bytes:
        problems.append(problem(None, None, None, (
            f"the model's activations take {activation_bytes:,} bytes per sample, over the limit of "
            f"{max_activation_bytes:,} (TRAINBOARD_MAX_ACTIVATION_BYTES): use smaller inputs, fewer filters, "
            "or downsample earlier (strides or pooling)")))
    if problems:
        raise SpecError(problems)
