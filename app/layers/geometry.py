"""Shape arithmetic the layer kinds share: sizes, windows, Keras "same" padding, and the problems
that say how to reach the shape a layer needs. Shapes are channels-first, without the batch axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.layers.base import Shape, ShapeProblem


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Keras accepts `3` or `(3, 3)` for sizes and strides; always give (h, w)."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def fmt(shape: Sequence[int]) -> str:
    """(28, 28) and (10,) as Python writes them."""
    return "(" + ", ".join(str(v) for v in shape) + ("," if len(shape) == 1 else "") + ")"


def window(size: int, size_window: int, stride: int, padding: str) -> int | None:
    """Output length along one axis (Keras semantics), or None when the window does not fit."""
    if padding == "same":
        return -(-size // stride)
    if size_window > size:
        return None
    return (size - size_window) // stride + 1


def same_pad(size: int, size_window: int, stride: int) -> tuple[int, int]:
    """Keras 'same' padding along one axis as (before, after): the extra pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + size_window - size, 0)
    return total // 2, total - total // 2


def stride_text(strides: Any, size_window: tuple[int, int]) -> str:
    """', stride 2' for describe(), nothing when the stride is the window or 1."""
    if strides is None or pair(strides) == size_window or pair(strides) == (1, 1):
        return ""
    sh, sw = pair(strides)
    return f", stride {sh}" if sh == sw else f", stride {sh}x{sw}"


def need_image(shape: Shape, index: int, what: str) -> tuple[int, int, int]:
    """(C, H, W), or a ShapeProblem that says how to get there."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2:
        fix = (f"set input_shape to [1, {shape[0]}, {shape[1]}]" if index == 0
               else f"add Reshape([1, {shape[0]}, {shape[1]}]) before it")
    else:
        fix = "set input_shape to [channels, height, width]" if index == 0 else "add a Reshape before it"
    raise ShapeProblem(f"{what} needs images (channels, height, width) but receives a {len(shape)}-D input "
                       f"{fmt(shape)}: {fix}")


def need_sequence(shape: Shape, what: str) -> tuple[int, int]:
    """(T, F), or a ShapeProblem that says how to get there."""
    if len(shape) == 3:
        c, h, w = shape
        raise ShapeProblem(f"receives images {fmt(shape)}: {what} a sequence (timesteps, features); "
                           f"add Reshape([{c * h}, {w}]) before it to read rows as timesteps")
    if len(shape) == 1:
        raise ShapeProblem(f"receives a 1-D input {fmt(shape)}: {what} a sequence (timesteps, "
                           "features); set input_shape to [timesteps, features], add a Reshape before it, or set "
                           "return_sequences on the recurrent layer before it")
    return shape  # type: ignore[return-value]


def spatial(shape: Shape, size_window: tuple[int, int], strides: tuple[int, int], padding: str,
            noun: str, field_name: str) -> tuple[int, int]:
    """(out_h, out_w) of a window sliding over (C, H, W), or a ShapeProblem naming `field_name`."""
    _, h, w = shape
    out_h = window(h, size_window[0], strides[0], padding)
    out_w = window(w, size_window[1], strides[1], padding)
    if out_h is None or out_w is None:
        raise ShapeProblem(
            f"the {size_window[0]}x{size_window[1]} {noun} does not fit its {h}x{w} input {fmt(shape)}: use "
            f"padding \"same\", a smaller {noun}, or less downsampling before it", field_name)
    return out_h, out_w




def steps(length: int, kernel: int, stride: int, padding: str, shape: Shape) -> int:
    """Timesteps out of a kernel sliding over `length` timesteps, or a ShapeProblem naming kernel_size."""
    out = window(length, kernel, stride, padding)
    if out is None:
        raise ShapeProblem(f"the kernel of {kernel} timesteps does not fit the {length} timesteps of its input "
                           f"{fmt(shape)}: use padding \"same\" or a smaller kernel", "kernel_size")
    return out
