"""The sweep page's charts as server-side SVG (they arrive with each live update; no script draws them):
parallel coordinates of parameters → objective, the objective by trial with the running best, and
parameter importances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

from app.sweeps.space import short

# The parallel coordinates span the page (about 1,150 px at 1,280): drawn near that size, their text reads
# at its CSS size; the other two charts share a row, so they are drawn at about half of it.
WIDTH, HEIGHT = 960, 320
PAD_TOP, PAD_BOTTOM, PAD_LEFT, PAD_RIGHT = 40, 16, 84, 72
MAX_TICKS = 8  # a numeric list with more choices than this gets its ends and middle only


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def _spread(low: float, high: float) -> tuple[float, float]:
    """A scale around a single value: a tenth of it either side (an accuracy of 0.21 gets 0.189 … 0.231,
    not a scale from -0.29), or ±0.5 around zero."""
    if low != high:
        return low, high
    pad = abs(low) * 0.1 or 0.5
    return low - pad, high + pad


def _text_width(text: str, size: float = 11) -> float:
    """About how wide a tick's text is drawn (digits and lower case average ~0.62 em in the UI fonts)."""
    return len(text) * size * 0.62


def _colour(fraction: float) -> str:
    """Worse → better as red → amber → green (readable on light and dark backgrounds)."""
    return f"hsl({round(4 + 128 * min(max(fraction, 0.0), 1.0))}, 70%, 45%)"


class Axis:
    """One vertical axis: a parameter (numeric, log or categorical) or the objective."""

    def __init__(self, key: str, values: Sequence[Any], domain: Any):
        self.key, self.label = key, short(key) if key != "objective" else "objective"
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        distribution = domain if isinstance(domain, dict) else None
        self.categories: list[Any] | None = None
        self.choices: list[int | float] | None = None  # a numeric list's values, each one a tick
        self.log = bool(distribution and str(distribution.get("type", "")).endswith("log_uniform"))
        if distribution:
            self.low, self.high = float(distribution["low"]), float(distribution["high"])
        elif isinstance(domain, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in domain) and domain:
            self.low, self.high = float(min(domain)), float(max(domain))
            self.log = self.low > 0 and self.high / self.low >= 16
            self.choices = list(domain)
        elif isinstance(domain, list):
            self.categories = list(domain)
        elif numbers:
            self.low, self.high = float(min(numbers)), float(max(numbers))
        else:
            self.low, self.high = 0.0, 1.0
        if self.categories is None:
            self.low, self.high = _spread(self.low, self.high)

    def position(self, value: Any) -> float | None:
        """0 (bottom) … 1 (top), None when the value is not on this axis."""
        if self.categories is not None:
            if value not in self.categories:
                return None
            count = len(self.categories)
            return 0.5 if count == 1 else self.categories.index(value) / (count - 1)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return None
        if self.log and value > 0 and self.low > 0:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        """Each choice of a list (numbers at their place on the scale); else the ends and the middle."""
        if self.categories is not None:
            return [(self.position(c) or 0.0, _fmt(c)) for c in self.categories]
        if self.choices and len(self.choices) <= MAX_TICKS:
            return [(self.position(c) or 0.0, _fmt(c)) for c in sorted(set(self.choices))]
        middle = math.sqrt(self.low * self.high) if self.log and self.low > 0 else (self.low + self.high) / 2
        return [(0.0, _fmt(self.low)), (self.position(middle) or 0.5, _fmt(middle)), (1.0, _fmt(self.high))]


def parallel_coordinates(view: dict[str, Any]) -> Markup | None:
    """A line per trial through its parameters to its objective; coloured by objective (completed
    trials), grey and dashed for pruned ones, the best one drawn thick on top."""
    space = view["space"]
    trials = [t for t in view["trials"] if t["params"]]
    if not space or not trials:
        return None
    values = [t["value"] for t in trials if t["value"] is not None]
    axes = [Axis(key, [t["params"].get(key) for t in trials], space[key]) for key in space]
    objective = Axis("objective", values, None)
    axes.append(objective)
    maximize = view["objective"]["direction"] == "maximize"
    span = WIDTH - PAD_LEFT - PAD_RIGHT
    xs = [PAD_LEFT + (span * i / (len(axes) - 1) if len(axes) > 1 else span / 2) for i in range(len(axes))]
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM

    def y(position: float) -> float:
        return PAD_TOP + inner * (1 - position)

    parts = [f'<svg class="chart pcoords" id="parallel-coordinates" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="pc-title" xmlns="http://www.w3.org/2000/svg"><title id="pc-title">Parallel coordinates: '
             f'each trial\'s parameters and its {escape(view["objective"]["metric"])}</title>']
    for x in xs:
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{PAD_TOP}" x2="{x:.1f}" y2="{PAD_TOP + inner}"/>')
    # The axes' names and ticks go on top of the lines (with a halo of the panel's colour: css).
    labels = []
    for x, axis in zip(xs, axes, strict=True):
        name = view["objective"]["metric"] if axis.key == "objective" else axis.label
        labels.append(f'<text class="axis-label" x="{x:.1f}" y="{PAD_TOP - 16}" text-anchor="middle">{escape(name)}'
                      f'<title>{escape(axis.key if axis.key != "objective" else name)}</title></text>')
        first, last = axis is axes[0], axis is axes[-1]
        for position, text in axis.ticks():
            ty = y(position)
            if first:  # in the margin, left of the axis: no line runs there
                labels.append(f'<text class="tick" x="{x - 6:.1f}" y="{ty + 4:.1f}" text-anchor="end">{escape(text)}</text>')
                continue
            if not last:  # lines run on both sides: the label sits on a patch of the panel's colour
                labels.append(f'<rect class="tick-bg" x="{x + 3:.1f}" y="{ty - 8:.1f}" width="{_text_width(text) + 6:.0f}" '
                              'height="15" rx="3"/>')
            labels.append(f'<text class="tick" x="{x + 6:.1f}" y="{ty + 4:.1f}">{escape(text)}</text>')
    best = (view.get("best") or {}).get("number")
    ordered = sorted(trials, key=lambda t: (t["number"] == best, t["value"] is not None))
    for trial in ordered:
        points = []
        for x, axis in zip(xs, axes, strict=True):
            value = trial["value"] if axis.key == "objective" else trial["params"].get(axis.key)
            position = axis.position(value)
            if position is None:
                break
            points.append(f"{x:.1f},{y(min(max(position, 0.0), 1.0)):.1f}")
        if len(points) < 2:
            continue
        if trial["value"] is not None:
            fraction = objective.position(trial["value"]) or 0.0
            colour = _colour(fraction if maximize else 1 - fraction)
            cls = "trial best" if trial["number"] == best else "trial"
            style = f' stroke="{colour}"'
        else:
            cls, style = f"trial trial-{trial['status']}", ""
        title = f"trial {trial['number']} ({trial['status']}): " + ", ".join(
            f"{short(k)}={_fmt(v)}" for k, v in trial["params"].items()) + (
            f" → {_fmt(trial['value'])}" if trial["value"] is not None else "")
        parts.append(f'<polyline class="{cls}" data-trial="{trial["number"]}"{style} points="{" ".join(points)}">'
                     f'<title>{escape(title)}</title></polyline>')
    parts.extend(labels)
    parts.append("</svg>")
    return Markup("".join(parts))


def objective_by_trial(view: dict[str, Any]) -> Markup | None:
    """Each finished trial's objective by trial number, and the running best as a staircase."""
    scored = [(t["number"], t["value"]) for t in view["trials"] if t["value"] is not None]
    if not scored:
        return None
    maximize = view["objective"]["direction"] == "maximize"
    count = max(t["number"] for t in view["trials"]) + 1
    low, high = min(v for _, v in scored), max(v for _, v in scored)
    low, high = _spread(low, high)
    width, height, left, right, bottom, top = 560, 240, 52, 16, 36, 12

    def px(number: float) -> float:
        return left + (width - left - right) * (number / max(count - 1, 1))

    def py(value: float) -> float:
        return top + (height - top - bottom) * (1 - (value - low) / (high - low))

    parts = [f'<svg class="chart by-trial" id="objective-by-trial" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="bt-title" xmlns="http://www.w3.org/2000/svg"><title id="bt-title">'
             f'{escape(view["objective"]["metric"])} by trial, with the best so far</title>']
    for value in (low, (low + high) / 2, high):
        parts.append(f'<line class="grid" x1="{left}" y1="{py(value):.1f}" x2="{width - right}" y2="{py(value):.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{py(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    parts += [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>',
              f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>']
    step = max(1, math.ceil(count / 10))
    for number in range(0, count, step):
        parts.append(f'<text class="tick" x="{px(number):.1f}" y="{height - bottom + 15}" text-anchor="middle">{number}</text>')
    parts.append(f'<text class="tick axis-name" x="{(left + width - right) / 2:.1f}" y="{height - 3}" '
                 'text-anchor="middle">trial</text>')
    best, steps = None, []
    for number, value in sorted(scored):
        if best is None or (value > best if maximize else value < best):
            best = value
        steps.append((number, best))
    path = []
    for i, (number, value) in enumerate(steps):
        if i:
            path.append(f"L{px(number):.1f},{py(steps[i - 1][1]):.1f}")
        path.append(f"{'M' if not i else 'L'}{px(number):.1f},{py(value):.1f}")
    path.append(f"L{px(count - 1):.1f},{py(steps[-1][1]):.1f}")
    parts.append(f'<path class="running-best" d="{" ".join(path)}"><title>best so far</title></path>')
    best_number = (view.get("best") or {}).get("number")
    for number, value in scored:
        parts.append(f'<circle class="point{" best" if number == best_number else ""}" cx="{px(number):.1f}" '
                     f'cy="{py(value):.1f}" r="{5 if number == best_number else 4}">'
                     f'<title>trial {number}: {_fmt(value)}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


def importance_bars(importances: dict[str, float] | None) -> Markup | None:
    """One bar per parameter, longest first (fANOVA: the share of the objective's variance it explains)."""
    if not importances:
        return None
    rows = sorted(importances.items(), key=lambda kv: -kv[1])
    width, row_height, label_width = 560, 26, 180
    height = row_height * len(rows) + 4
    parts = [f'<svg class="chart importances" id="importances" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="imp-title" xmlns="http://www.w3.org/2000/svg"><title id="imp-title">Parameter '
             'importances</title>']
    for i, (key, score) in enumerate(rows):
        top = 2 + i * row_height
        bar = (width - label_width - 60) * score
        parts.append(f'<text class="tick" x="{label_width - 8}" y="{top + 17}" text-anchor="end">{escape(short(key))}</text>'
                     f'<rect class="bar" x="{label_width}" y="{top + 4}" width="{max(bar, 1):.1f}" height="{row_height - 8}">'
                     f'<title>{escape(key)}: {score:.1%}</title></rect>'
                     f'<text class="tick" x="{label_width + bar + 6:.1f}" y="{top + 17}">{score:.0%}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
