"""Explainer pages (no data behind them): the activation functions, with formulas and plotted curves."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(frozen=True)
class Activation:
    name: str
    formula: str
    text: str
    function: Callable[[float], float]
    note: str = ""


def _softmax_first(x: float) -> float:
    """The first probability of softmax([x, 1, 0]): how one logit moves its class's probability."""
    exps = [math.exp(x), math.e, 1.0]
    return exps[0] / sum(exps)


ACTIVATIONS = [
    Activation("relu", "relu(x) = max(0, x)",
               "The default for hidden layers: cheap, and its gradient is 1 for every positive input, so deep "
               "networks keep learning. Units whose input stays negative stop learning (“dead” units).",
               lambda x: max(0.0, x)),
    Activation("sigmoid", "σ(x) = 1 / (1 + e⁻ˣ)",
               "Squashes any number into (0, 1): use it on the output for yes/no (binary or multi-label) "
               "problems. In hidden layers it saturates and slows learning.",
               lambda x: 1 / (1 + math.exp(-x))),
    Activation("tanh", "tanh(x) = (eˣ − e⁻ˣ) / (eˣ + e⁻ˣ)",
               "Like sigmoid but centred on 0, in (−1, 1). The classic choice inside recurrent layers.",
               math.tanh),
    Activation("softmax", "softmax(z)ᵢ = e^zᵢ / Σⱼ e^zⱼ",
               "Turns a vector of scores (logits) into probabilities that sum to 1: the output layer of a "
               "classifier with one label per sample. It acts on the whole vector, not one number.",
               _softmax_first, "Plotted: the first probability of softmax([x, 1, 0]) as its logit x varies."),
    Activation("gelu", "gelu(x) = x · Φ(x)",
               "A smooth relu (Φ is the standard normal CDF) used by transformers; it lets small negative "
               "values through.",
               lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2)))),
    Activation("leaky_relu", "leaky_relu(x) = x if x > 0 else 0.01 · x",
               "relu with a small slope for negative inputs, so no unit goes completely dead.",
               lambda x: x if x > 0 else 0.01 * x, "Plotted with slope 0.01 (the PyTorch default)."),
    Activation("elu", "elu(x) = x if x > 0 else eˣ − 1",
               "Smooth for negative inputs, which pushes mean activations toward 0 and can speed learning.",
               lambda x: x if x > 0 else math.exp(x) - 1),
    Activation("linear", "linear(x) = x",
               "No activation. Right for regression outputs; between two Dense layers it adds nothing, since "
               "two linear maps in a row are one linear map.",
               lambda x: x),
]

WIDTH, HEIGHT, PAD = 240, 150, 22
X_RANGE = (-4.0, 4.0)


def curve_svg(activation: Activation) -> Markup:
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
    items = [{"activation": a, "svg": curve_svg(a)} for a in ACTIVATIONS]
    return render(request, "learn/activations.html", {"items": items})
