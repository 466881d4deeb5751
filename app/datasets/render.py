"""PNG previews of single samples (PIL only: the web process renders these)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.core.errors import InvalidInput

PREVIEW_MIN = 112  # pixels on the long side; tiny images are upscaled by a whole factor
# One colour per class in scatter plots (and line colours per feature); the data sets page draws its legend.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
_PALETTE = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in CLASS_COLOURS]


def class_colour(index: int) -> str:
    """The colour of class `index` in the scatter plots (the palette repeats after ten classes)."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def preview_scale(height: int, width: int) -> int:
    """The whole-number upscale factor that brings the long side to at least PREVIEW_MIN pixels."""
    return max(1, -(-PREVIEW_MIN // max(height, width)))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _image(sample: np.ndarray) -> Image.Image:
    channels, height, width = sample.shape
    pixels = np.asarray(sample)
    if pixels.dtype != np.uint8:
        lo, hi = float(pixels.min()), float(pixels.max())
        pixels = ((pixels - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    if channels == 1:
        image = Image.fromarray(pixels[0], mode="L")
    elif channels == 3:
        image = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
    else:
        raise InvalidInput(f"cannot preview images with {channels} channels")
    scale = preview_scale(height, width)
    return image.resize((width * scale, height * scale), Image.Resampling.NEAREST)


def _scatter(x: np.ndarray, y: np.ndarray, index: int | None, size: int = 160) -> Image.Image:
    """The whole split (its first 2,000 points) as dots coloured by class; with `index`, that sample
    ringed in black (the gallery's picture of one misclassified point)."""
    pts = np.asarray(x[:2000], dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)

    def to_px(p: np.ndarray) -> tuple[float, float]:
        q = (np.asarray(p, dtype=np.float64) - lo) / span
        return 8 + q[0] * (size - 16), size - 8 - q[1] * (size - 16)

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    dot = size / 160
    for p, label in zip(pts, np.asarray(y[:2000]), strict=True):
        cx, cy = to_px(p)
        draw.ellipse((cx - dot, cy - dot, cx + dot, cy + dot), fill=_PALETTE[int(label) % len(_PALETTE)])
    if index is not None:
        cx, cy = to_px(x[index])
        draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline="black", width=2)
    return image


def _line_plot(seq: np.ndarray, width: int = 200, height: int = 100) -> Image.Image:
    values = np.asarray(seq, dtype=np.float64).reshape(len(seq), -1)
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or 1.0
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    steps = max(len(values) - 1, 1)
    for f in range(values.shape[1]):
        points = [(4 + t * (width - 8) / steps, height - 4 - (v - lo) / span * (height - 8))
                  for t, v in enumerate(values[:, f])]
        draw.line(points, fill=_PALETTE[f % len(_PALETTE)], width=2)
    return image


def render_points(x: np.ndarray, y: np.ndarray) -> bytes:
    """A 2-D points split as one scatter, coloured by class, nothing ringed (the data sets page)."""
    return _png(_scatter(x, y, None, size=320))


def render_sample(meta: dict[str, Any], x: np.ndarray, y: np.ndarray, index: int) -> bytes:
    """Render sample `index` of (x, y) as PNG bytes according to the data set's kind."""
    kind = meta["kind"]
    if kind == "image":
        return _png(_image(x[index]))
    if kind == "points" and x.shape[1] == 2:
        return _png(_scatter(x, y, index))
    if kind == "sequence" and x.dtype != np.int64:
        return _png(_line_plot(x[index]))
    raise InvalidInput(f"{meta['name']} holds {kind} data: there is no picture of a single sample")
