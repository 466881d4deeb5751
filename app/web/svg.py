"""Server-side SVG: the architecture diagram (a box per layer with its output shape).

Colours come from CSS classes (`.dia-<kind>`), so the diagram follows the page's light or
dark theme; no script draws anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH = 360
BOX_HEIGHT = 46
GAP = 22
MIN_BOX, MAX_BOX = 220, 344  # box widths grow with the log of the layer's output size

KINDS = {
    "Dense": "dense", "Conv2D": "conv", "MaxPooling2D": "pool", "AveragePooling2D": "pool",
    "GlobalAveragePooling2D": "pool", "Flatten": "shape", "Reshape": "shape", "Dropout": "reg",
    "BatchNormalization": "reg", "Activation": "reg", "SimpleRNN": "rnn", "LSTM": "rnn", "GRU": "rnn",
    "Embedding": "embed", "Pretrained": "pretrained",
}


@dataclass(frozen=True)
class DiagramBox:
    """One box: a label ('Dense 128, relu'), the output shape (None: unknown) and its parameters."""

    label: str
    layer_type: str
    shape: Sequence[int] | None
    params: int | None = None
    error: bool = False


def architecture_diagram(input_shape: Sequence[int] | None, boxes: Sequence[DiagramBox]) -> Markup:
    """The input, then each layer top to bottom, joined by arrows; wider boxes carry more values."""
    all_boxes = [DiagramBox("Input", "Input", input_shape), *boxes]
    sizes = [math.prod(box.shape) for box in all_boxes if box.shape]
    largest = math.log(max(sizes)) if sizes and max(sizes) > 1 else 1.0
    height = len(all_boxes) * (BOX_HEIGHT + GAP) - GAP + 2
    parts = [
        f'<svg class="diagram" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-labelledby="diagram-title" xmlns="http://www.w3.org/2000/svg">',
        '<title id="diagram-title">Network diagram: each layer with its output shape</title>',
    ]
    for position, box in enumerate(all_boxes):
        top = 1 + position * (BOX_HEIGHT + GAP)
        if position:
            parts.append(_arrow(top - GAP, top))
        parts.append(_box(box, top, _width(box, largest)))
    parts.append("</svg>")
    return Markup("".join(parts))


def _width(box: DiagramBox, largest: float) -> int:
    if not box.shape:
        return MIN_BOX
    fraction = math.log(max(math.prod(box.shape), 1)) / largest if largest > 0 else 0
    return round(MIN_BOX + (MAX_BOX - MIN_BOX) * min(max(fraction, 0.0), 1.0))


def _box(box: DiagramBox, top: int, width: int) -> str:
    left = (WIDTH - width) / 2
    kind = KINDS.get(box.layer_type, "input")
    shape = "(" + ", ".join(str(v) for v in box.shape) + ("," if len(box.shape) == 1 else "") + ")" \
        if box.shape else "?"
    detail = shape if not box.params else f"{shape} · {box.params:,} params"
    css = f"dia-box dia-{kind}" + (" dia-error" if box.error else "")
    return (
        f'<g class="{css}"><rect x="{left:.1f}" y="{top}" width="{width}" height="{BOX_HEIGHT}" rx="8"/>'
        f'<text class="dia-label" x="{WIDTH / 2}" y="{top + 19}" text-anchor="middle">{escape(box.label)}</text>'
        f'<text class="dia-detail" x="{WIDTH / 2}" y="{top + 36}" text-anchor="middle">{escape(detail)}</text></g>'
    )


def _arrow(start: int, end: int) -> str:
    middle = WIDTH / 2
    return (
        f'<path class="dia-arrow" d="M{middle} {start + 3} V{end - 5} '
        f'M{middle - 4} {end - 9} L{middle} {end - 4} L{middle + 4} {end - 9}"/>'
    )
