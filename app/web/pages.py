"""Explainer pages (no data behind them): the activation functions, with formulas and plotted curves."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from app.layers.activations import ACTIVATIONS, ActivationInfo
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

WIDTH, HEIGHT, PAD = 240, 150, 22
X_RANGE = (-4.0, 4.0)


def curve_svg(activation: ActivationInfo) -> Markup:
    """The function on [-4, 4] with its axes; the y-range fits the curve (colours come from CSS)."""
    xs = [X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * i / 160 for i in range(161)]
    ys = [activation.function(x) for x in xs]
    low, high = min(min(ys), 0.0), max(max(ys), 1.0)
    span = high - low or 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return (PAD + (x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]) * (WIDTH - 2 * PAD),
                HEIGHT - PAD - (y - low) / span * (HEIGHT - 2 * PAD))

    points = [px(x, y) for x, y in zip(xs, ys, strict=True)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f} {y:.1f}" for i, (x, y) in enumerate(points))
    x0, y0 = px(0, 0)
    _, y1 = px(0, 1)
    left, _ = px(X_RANGE[0], 0)
    right, _ = px(X_RANGE[1], 0)
    return Markup(
        f'<svg class="act-plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="plot of {activation.name}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<line class="act-axis" x1="{left}" y1="{y0:.1f}" x2="{right}" y2="{y0:.1f}"/>'
        f'<line class="act-axis" x1="{x0:.1f}" y1="{PAD - 8}" x2="{x0:.1f}" y2="{HEIGHT - PAD + 8}"/>'
        f'<line class="act-grid" x1="{left}" y1="{y1:.1f}" x2="{right}" y2="{y1:.1f}"/>'
        f'<text class="act-tick" x="{x0 + 4:.1f}" y="{y1 - 3:.1f}">1</text>'
        f'<text class="act-tick" x="{left}" y="{y0 + 13:.1f}">−4</text>'
        f'<text class="act-tick" x="{right - 8}" y="{y0 + 13:.1f}">4</text>'
        f'<path class="act-curve" d="{path}"/></svg>'
    )


@router.get("/learn/activations", response_class=HTMLResponse)
def activations_page(request: Request) -> HTMLResponse:
    """What each activation the builder offers does, with its formula and curve."""
    items = [{"activation": a, "svg": curve_svg(a)} for a in ACTIVATIONS.values()]
    return render(request, "learn/activations.html", {"items": items})
