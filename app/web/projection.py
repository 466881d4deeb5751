"""The run's "Projection" page: its test set as the model sees it (app/runs/projection.py), drawn here.

An SVG scatter of the penultimate layer's activations in 2-D (PCA), a dot per test sample coloured by its
true class; the samples the model got wrong are ringed and link to their image (the data set's sample
endpoint, as the misclassified gallery's do); hovering any dot says its true and predicted class
(static/js/projection.js, and the dot's own <title>). A run without a projection gets the page with the
reason, never an error.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from app.core.deps import SessionDep
from app.core.errors import NotFound
from app.datasets.render import class_colour
from app.runs import projection
from app.web.runs import RunPageDep
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

WIDTH, HEIGHT, PAD = 640, 480, 16


@router.get("/runs/{run_id}/projection", response_class=HTMLResponse)
def projection_page(request: Request, db_session: SessionDep, run: RunPageDep) -> HTMLResponse:
    try:
        data = projection.get(db_session=db_session, run_id=run.id)
    except NotFound as exc:
        data, reason = None, exc.message
    else:
        reason = ""
    names = (data or {}).get("class_names") or []
    legend = [{"name": name, "colour": class_colour(i)} for i, name in enumerate(names)]
    return render(request, "runs/projection.html", {
        "run": run, "data": data, "reason": reason, "legend": legend,
        "chart": scatter(data, run.dataset) if data else None})


def _name(names: list[str], index: Any) -> str:
    return names[index] if isinstance(index, int) and 0 <= index < len(names) else str(index)


def scatter(data: dict[str, Any], dataset: str) -> Markup:
    """A dot per point; the misclassified drawn last (on top), ringed, each a link to its test image."""
    xs, ys, names = data["x"], data["y"], data.get("class_names") or []
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def px(v: float) -> float:
        return PAD + (v - x_lo) / x_span * (WIDTH - 2 * PAD)

    def py(v: float) -> float:
        return HEIGHT - PAD - (v - y_lo) / y_span * (HEIGHT - 2 * PAD)

    right, wrong = [], []
    for x, y, true, pred, index in zip(xs, ys, data["true"], data["pred"], data["index"], strict=True):
        label = f"test #{index}: true {_name(names, true)}, predicted {_name(names, pred)}"
        colour = class_colour(true) if isinstance(true, int) else "#888"
        dot = (f'<circle class="pj-point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="{4 if true != pred else 2.6}" '
               f'fill="{colour}"><title>{escape(label)}</title></circle>')
        data_attrs = f'data-true="{escape(_name(names, true))}" data-pred="{escape(_name(names, pred))}" data-index="{index}"'
        if true == pred:
            right.append(f'<g class="pj-dot" {data_attrs}>{dot}</g>')
        else:
            href = f"/api/datasets/{escape(dataset)}/samples/{int(index)}.png?split=test"
            wrong.append(f'<a class="pj-dot pj-miss" href="{href}" target="_blank" rel="noopener" '
                         f'aria-label="{escape(label)}" {data_attrs}>{dot}</a>')
    parts = [f'<svg class="projection" id="projection-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="projection-title" data-points="{len(xs)}" xmlns="http://www.w3.org/2000/svg">',
             '<title id="projection-title">Test samples by the first two principal components of the penultimate '
             'layer</title>',
             f'<rect class="sc-frame" x="1" y="1" width="{WIDTH - 2}" height="{HEIGHT - 2}"/>',
             *right, *wrong, "</svg>"]
    return Markup("".join(parts))
