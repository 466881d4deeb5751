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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from app.architectures import spec as s
from app.architectures.spec import ArchitectureSpec, SpecError, layer_label, pair, parse_spec, problem

# Backbones without their classifier head, measured once from torchvision (weights=None);
# tests/architectures/test_backbones.py checks every number against torchvision.
# min_size: the smallest input side we accept; smaller images leave almost nothing of the
# backbone's 32x downsampling to learn from (torchvision would run, but uselessly).
BACKBONES: dict[str, dict[str, int]] = {
    "resnet18": {"features": 512, "params": 11_176_512, "flops_224": 3_627_122_688, "min_size": 32},
    "resnet34": {"features": 512, "params": 21_284_672, "flops_224": 7_326_498_816, "min_size": 32},
    "resnet50": {"features": 2048, "params": 23_508_032, "flops_224": 8_174_272_512, "min_size": 32},
    "mobilenet_v3_small": {"features": 576, "params": 927_008, "flops_224": 109_793_152, "min_size": 32},
    "mobilenet_v3_large": {"features": 960, "params": 2_971_952, "flops_224": 428_161_920, "min_size": 32},
    "efficientnet_b0": {"features": 1280, "params": 4_007_548, "flops_224": 769_069_504, "min_size": 32},
}
# PyTorch's gate count per recurrent cell.
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
# Activations a model may end in that the engine applies itself (the module returns logits).
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


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


@dataclass
class _Out:
    shape: tuple[int, ...]
    params: int = 0
    trainable: int | None = None  # None: all params are trainable
    flops: int = 0


class _Problem(Exception):
    """A layer that cannot take its input. `recover` lets inference go on to find more problems."""

    def __init__(self, message: str, field: str | None = None, recover: tuple[int, ...] | None = None):
        super().__init__(message)
        self.message, self.field, self.recover = message, field, recover


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
            out = _INFER[layer.type](layer, shape, index)
        except _Problem as exc:
            problems.append(problem(index, layer.type, exc.field, f"{layer_label(index, layer.type)}: {exc.message}"))
            if exc.recover is None:
                break  # later shapes are unknowable; their problems would only be noise
            out = _Out(exc.recover)
        shape = out.shape
        trainable = out.params if out.trainable is None else out.trainable
        elements = math.prod(shape)
        layers.append(LayerSummary(
            index=index, type=layer.type, output_shape=list(shape), params=out.params,
            trainable_params=trainable, flops=out.flops, activation_bytes=4 * elements,
            description=describe(layer),
        ))
    if problems:
        raise SpecError(problems)

    total = sum(item.params for item in layers)
    trainable = sum(item.trainable_params for item in layers)
    activation_bytes = sum(item.activation_bytes for item in layers)
    _check_caps(total, activation_bytes, max_params, max_activation_bytes)
    return Summary(
        input_shape=list(shape_source),
        input_dtype="int64" if parsed.layers[0].type == "Embedding" else "float32",
        output_shape=list(shape),
        output_activation=output_activation(parsed),
        total_params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        flops=sum(item.flops for item in layers),
        activation_bytes=activation_bytes,
        layers=layers,
    )


def output_activation(parsed: ArchitectureSpec) -> str | None:
    """The final softmax/sigmoid that the built module leaves to the engine (it returns logits)."""
    last = parsed.layers[-1]
    activation = getattr(last, "activation", None)
    if last.type in ("Dense", "Conv2D", "Activation") and activation in OUTPUT_ACTIVATIONS:
        return activation
    return None


def describe(layer: Any) -> str:
    """A short label for diagrams and tables, e.g. 'Dense 128, relu'."""
    act = f", {layer.activation}" if getattr(layer, "activation", "linear") not in ("linear", "tanh") else ""
    if layer.type == "Dense":
        return f"Dense {layer.units}{act}"
    if layer.type == "Conv2D":
        kh, kw = pair(layer.kernel_size)
        extra = _stride_text(layer.strides, (kh, kw)) + (", same" if layer.padding == "same" else "")
        return f"Conv2D {layer.filters}, {kh}x{kw}{extra}{act}"
    if layer.type in ("MaxPooling2D", "AveragePooling2D"):
        ph, pw = pair(layer.pool_size)
        name = "MaxPool" if layer.type == "MaxPooling2D" else "AvgPool"
        extra = _stride_text(layer.strides, (ph, pw)) + (", same" if layer.padding == "same" else "")
        return f"{name} {ph}x{pw}{extra}"
    if layer.type == "GlobalAveragePooling2D":
        return "GlobalAvgPool"
    if layer.type == "Dropout":
        return f"Dropout {layer.rate:g}"
    if layer.type == "BatchNormalization":
        return "BatchNorm"
    if layer.type == "Activation":
        return f"Activation {layer.activation}"
    if layer.type in GATES:
        flags = ", bidirectional" if layer.bidirectional else ""
        flags += ", sequences" if layer.return_sequences else ""
        return f"{layer.type} {layer.units}{flags}{act}"
    if layer.type == "Embedding":
        return f"Embedding {layer.input_dim}→{layer.output_dim}"
    if layer.type == "Reshape":
        return f"Reshape {tuple(layer.target_shape)}"
    if layer.type == "Pretrained":
        return f"{layer.backbone} ({layer.weights.split(':')[0]}, {'trainable' if layer.trainable else 'frozen'})"
    return layer.type


def _stride_text(strides: Any, window: tuple[int, int]) -> str:
    if strides is None or pair(strides) == window or pair(strides) == (1, 1):
        return ""
    sh, sw = pair(strides)
    return f", stride {sh}" if sh == sw else f", stride {sh}x{sw}"


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(v) for v in shape) + ("," if len(shape) == 1 else "") + ")"


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


def _need_image(layer: Any, shape: tuple[int, ...], index: int, what: str) -> tuple[int, int, int]:
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        fix = (f"set input_shape to [1, {shape[0]}, {shape[1]}]" if index == 0
               else f"add Reshape([1, {shape[0]}, {shape[1]}]) before it")
    else:
        fix = "set input_shape to [channels, height, width]" if index == 0 else "add a Reshape before it"
    raise _Problem(f"{what} needs images (channels, height, width) but receives a {len(shape)}-D input "
                   f"{_fmt(shape)}: {fix}")


def _window(size: int, window: int, stride: int, padding: str) -> int | None:
    """Output length along one axis (Keras semantics), or None when the window does not fit."""
    if padding == "same":
        return -(-size // stride)
    if window > size:
        return None
    return (size - window) // stride + 1


def _spatial(layer: Any, shape: tuple[int, int, int], window: tuple[int, int], strides: tuple[int, int],
             noun: str, field: str) -> tuple[int, int]:
    _, h, w = shape
    out_h = _window(h, window[0], strides[0], layer.padding)
    out_w = _window(w, window[1], strides[1], layer.padding)
    if out_h is None or out_w is None:
        raise _Problem(
            f"the {window[0]}x{window[1]} {noun} does not fit its {h}x{w} input {_fmt(shape)}: use padding "
            f"\"same\", a smaller {noun}, or less downsampling before it", field)
    return out_h, out_w


def _dense(layer: s.Dense, shape: tuple[int, ...], index: int) -> _Out:
    bias = layer.units if layer.use_bias else 0
    if len(shape) == 3:
        raise _Problem(f"receives a 3-D input {_fmt(shape)}: add a Flatten before it", recover=(layer.units,))
    # Like Keras and nn.Linear, Dense on (T, F) acts on the last axis of every timestep.
    features, steps = shape[-1], math.prod(shape[:-1])
    return _Out(shape[:-1] + (layer.units,), features * layer.units + bias, flops=2 * steps * features * layer.units)


def _conv(layer: s.Conv2D, shape: tuple[int, ...], index: int) -> _Out:
    c, _, _ = _need_image(layer, shape, index, "Conv2D")
    kernel, strides = pair(layer.kernel_size), pair(layer.strides)
    out_h, out_w = _spatial(layer, shape, kernel, strides, "kernel", "kernel_size")  # type: ignore[arg-type]
    macs_per_pixel = kernel[0] * kernel[1] * c * layer.filters
    params = macs_per_pixel + (layer.filters if layer.use_bias else 0)
    return _Out((layer.filters, out_h, out_w), params, flops=2 * macs_per_pixel * out_h * out_w)


def _pool(layer: s.MaxPooling2D | s.AveragePooling2D, shape: tuple[int, ...], index: int) -> _Out:
    c, _, _ = _need_image(layer, shape, index, layer.type)
    window = pair(layer.pool_size)
    strides = pair(layer.strides) if layer.strides is not None else window
    out_h, out_w = _spatial(layer, shape, window, strides, "pool", "pool_size")  # type: ignore[arg-type]
    return _Out((c, out_h, out_w))


def _global_pool(layer: s.GlobalAveragePooling2D, shape: tuple[int, ...], index: int) -> _Out:
    c, _, _ = _need_image(layer, shape, index, "GlobalAveragePooling2D")
    return _Out((c,))


def _batch_norm(layer: s.BatchNormalization, shape: tuple[int, ...], index: int) -> _Out:
    # Channels-first images normalize per channel; vectors and sequences per feature (last axis).
    channels = shape[0] if len(shape) == 3 else shape[-1]
    if len(shape) > 3:
        raise _Problem(f"receives a {len(shape)}-D input {_fmt(shape)}; it supports vectors, sequences and images")
    return _Out(shape, 2 * channels)


def _recurrent(layer: s.SimpleRNN | s.LSTM | s.GRU, shape: tuple[int, ...], index: int) -> _Out:
    if len(shape) == 3:
        c, h, w = shape
        raise _Problem(f"receives images {_fmt(shape)}: recurrent layers need a sequence (timesteps, features); "
                       f"add Reshape([{c * h}, {w}]) before it to read rows as timesteps")
    if len(shape) == 1:
        raise _Problem(f"receives a 1-D input {_fmt(shape)}: recurrent layers need a sequence (timesteps, "
                       "features); set input_shape to [timesteps, features], add a Reshape before it, or set "
                       "return_sequences on the recurrent layer before it")
    steps, features = shape
    directions = 2 if layer.bidirectional else 1
    gates, units = GATES[layer.type], layer.units
    params = directions * gates * (units * features + units * units + 2 * units)
    flops = directions * 2 * steps * gates * (units * features + units * units)
    width = directions * units
    return _Out((steps, width) if layer.return_sequences else (width,), params, flops=flops)


def _embedding(layer: s.Embedding, shape: tuple[int, ...], index: int) -> _Out:
    if index != 0:
        raise _Problem("Embedding must be the first layer: it turns integer token ids into vectors")
    if len(shape) != 1:
        raise _Problem(f"needs token ids of shape (timesteps,), but the input is {_fmt(shape)}: set input_shape "
                       "to [timesteps]", recover=(math.prod(shape), layer.output_dim))
    return _Out((shape[0], layer.output_dim), layer.input_dim * layer.output_dim)


def _reshape(layer: s.Reshape, shape: tuple[int, ...], index: int) -> _Out:
    elements, target = math.prod(shape), list(layer.target_shape)
    known = math.prod(v for v in target if v != -1)
    if -1 in target:
        if elements % known:
            raise _Problem(f"cannot reshape {_fmt(shape)} ({elements} values) into {_fmt(target)}: "
                           f"{elements} is not a multiple of {known}", "target_shape")
        target[target.index(-1)] = elements // known
    elif known != elements:
        raise _Problem(f"Reshape to {_fmt(target)} needs {known} values but its input {_fmt(shape)} has "
                       f"{elements}: the sizes must multiply to {elements}", "target_shape")
    return _Out(tuple(target))


def _pretrained(layer: s.Pretrained, shape: tuple[int, ...], index: int) -> _Out:
    info = BACKBONES[layer.backbone]
    name = f"Pretrained {layer.backbone}"
    if len(shape) != 3:
        raise _Problem(f"{name} expects 3-channel images (3, height, width); the input is {_fmt(shape)}")
    c, h, w = shape
    if c != 3:
        raise _Problem(f"{name} expects 3-channel images; the input has {c}: use a colour data set, or add "
                       "Conv2D(filters=3, kernel_size=1) before it to map the channels to 3")
    if min(h, w) < info["min_size"]:
        raise _Problem(f"{name} needs images at least {info['min_size']}x{info['min_size']}; the input is {h}x{w}: "
                       "use larger images or a smaller model")
    flops = round(info["flops_224"] * (h * w) / (224 * 224))
    return _Out((info["features"],), info["params"], info["params"] if layer.trainable else 0, flops)


def _same(layer: Any, shape: tuple[int, ...], index: int) -> _Out:
    return _Out(shape)


def _flatten(layer: s.Flatten, shape: tuple[int, ...], index: int) -> _Out:
    return _Out((math.prod(shape),))


_INFER: dict[str, Callable[[Any, tuple[int, ...], int], _Out]] = {
    "Dense": _dense,
    "Conv2D": _conv,
    "MaxPooling2D": _pool,
    "AveragePooling2D": _pool,
    "GlobalAveragePooling2D": _global_pool,
    "Flatten": _flatten,
    "Dropout": _same,
    "BatchNormalization": _batch_norm,
    "Activation": _same,
    "SimpleRNN": _recurrent,
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "Embedding": _embedding,
    "Reshape": _reshape,
    "Pretrained": _pretrained,
}
