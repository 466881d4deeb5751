"""PNG previews of single samples (PIL only: the web process renders these)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.core.errors import InvalidInput

PREVIEW_MIN = 112  # pixels on the long side; tiny images are upscaled by a whole factor
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


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


def _scatter(x: np.ndarray, y: np.ndarray, index: int, size: int = 160) -> Image.Image:
    # The whole split as context, the chosen point ringed in black.
    pts = np.asarray(x[:2000], dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)

    def to_px(p: np.ndarray) -> tuple[float, float]:
        q = (np.asarray(p, dtype=np.float64) - lo) / span
        return 8 + q[0] * (size - 16), size - 8 - q[1] * (size - 16)

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for p, label in zip(pts, np.asarray(y[:2000]), strict=True):
        cx, cy = to_px(p)
        draw.point((cx, cy), fill=_PALETTE[int(label) % len(_PALETTE)])
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
