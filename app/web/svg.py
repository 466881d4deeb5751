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

from app.layers.registry import diagram_family

WIDTH = 360
BOX_HEIGHT = 46
GAP = 22
MIN_BOX, MAX_BOX = 220, 344  # box widths grow with the log of the layer's output size


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
    kind = diagram_family(box.layer_type)
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


# ---------- scatter: accuracy against a cost, with the Pareto front ----------

PLOT_W, PLOT_H = 360, 240
MARGIN = {"left": 62, "right": 14, "top": 12, "bottom": 40}


@dataclass(frozen=True)
class ScatterPoint:
    """One run: its label ('#3'), colour, the cost (x) and the accuracy (y)."""

    label: str
    color: str
    x: float
    y: float
    title: str = ""


def scatter(points: Sequence[ScatterPoint], *, x_label: str, y_label: str, x_format,
            fronts: Sequence[Sequence[int]] = (), log_x: bool = False, chart_id: str = "scatter") -> Markup:
    """Points with their labels; the runs of each front (indices into points, cheapest first; one front
    per data set) joined by a step line."""
    inner_w = PLOT_W - MARGIN["left"] - MARGIN["right"]
    inner_h = PLOT_H - MARGIN["top"] - MARGIN["bottom"]
    transform = (lambda v: math.log10(max(v, 1e-12))) if log_x else (lambda v: v)  # noqa: E731
    xs, ys = [transform(p.x) for p in points], [p.y for p in points]
    x_lo, x_hi = _padded(min(xs), max(xs))
    y_lo, y_hi = _padded(min(ys), max(ys))
    y_hi = min(y_hi, 1.0) if max(ys) <= 1.0 else y_hi

    def px(v: float) -> float:
        return MARGIN["left"] + (transform(v) - x_lo) / (x_hi - x_lo) * inner_w

    def py(v: float) -> float:
        return MARGIN["top"] + (1 - (v - y_lo) / (y_hi - y_lo)) * inner_h

    parts = [
        f'<svg class="scatter" id="{escape(chart_id)}" viewBox="0 0 {PLOT_W} {PLOT_H}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(y_label)} against {escape(x_label)}</title>',
        f'<rect class="sc-frame" x="{MARGIN["left"]}" y="{MARGIN["top"]}" width="{inner_w}" height="{inner_h}"/>',
    ]
    for i in range(5):  # y grid and ticks
        value = y_lo + (y_hi - y_lo) * i / 4
        y = py(value)
        parts.append(f'<line class="sc-grid" x1="{MARGIN["left"]}" x2="{PLOT_W - MARGIN["right"]}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="sc-tick" x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.1%}</text>')
    for i in range(4):  # x ticks; the outer ones aligned inwards so they stay inside the picture
        t = x_lo + (x_hi - x_lo) * i / 3
        value = 10 ** t if log_x else t
        x = MARGIN["left"] + inner_w * i / 3
        anchor = "start" if i == 0 else "end" if i == 3 else "middle"
        parts.append(f'<text class="sc-tick" x="{x:.1f}" y="{PLOT_H - MARGIN["bottom"] + 16}" '
                     f'text-anchor="{anchor}">{escape(x_format(value))}</text>')
    parts.append(f'<text class="sc-axis" transform="translate(12 {MARGIN["top"] + inner_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    parts.append(f'<text class="sc-axis" x="{MARGIN["left"] + inner_w / 2}" y="{PLOT_H - 6}" '
                 f'text-anchor="middle">{escape(x_label)}{" (log scale)" if log_x else ""}</text>')
    for front in fronts:
        on_front = [points[i] for i in front]
        if len(on_front) > 1:
            path = [f"M{px(on_front[0].x):.1f} {py(on_front[0].y):.1f}"]
            for point in on_front[1:]:
                path.append(f"H{px(point.x):.1f} V{py(point.y):.1f}")
            parts.append(f'<path class="sc-front" d="{" ".join(path)}"/>')
    front = {i for f in fronts for i in f}
    for index, point in enumerate(points):
        x, y = px(point.x), py(point.y)
        css = "sc-point sc-on-front" if index in front else "sc-point"
        parts.append(f'<g class="{css}" data-label="{escape(point.label)}"><title>{escape(point.title or point.label)}</title>'
                     f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{escape(point.color)}"/>'
                     f'<text class="sc-label" x="{x + 9:.1f}" y="{y - 7:.1f}">{escape(point.label)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """The axis range: the data plus 8% on each side (a lone value gets a unit-wide range)."""
    if hi - lo < 1e-12:
        spread = abs(lo) * 0.1 or 0.5
        return lo - spread, hi + spread
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad
