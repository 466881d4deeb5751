"""The launch form's "Find a learning rate": start a range test for the form's run, poll it, draw it.

POST /runs/lr-finder takes the launch form as it stands (the same `RunCreate` a launch builds): a
problem re-renders the form with the message next to its field (422); otherwise the answer is the
finder's panel, which polls GET /runs/lr-finder/{id} until the search ends and then shows the curve
(an SVG drawn here: loss against the learning rate on a log axis), the suggestion and "Use this"
(static/js/lr_finder.js puts it in the learning-rate field). The work is app/runs/lr_finder.py's.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from app.core.deps import SessionDep
from app.core.errors import DomainError, NotFound
from app.runs import lr_finder
from app.web import run_form
from app.web.architectures import FormDep
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

JobId = Path(pattern=r"^[0-9a-f]{1,64}$")
WIDTH, HEIGHT = 420, 240
MARGIN = {"left": 52, "right": 14, "top": 12, "bottom": 40}


@router.post("/runs/lr-finder", response_class=HTMLResponse)
def start(request: Request, db_session: SessionDep, form: FormDep) -> HTMLResponse:
    """Start the range test for the posted form; errors go next to their fields, as a launch's do."""
    from app.web.runs import _form_page  # the launch form's page (that module imports much more)

    posted = run_form.from_form(form)
    run_in = run_form.to_run_create(posted)
    job, message = None, ""
    if run_in is not None:
        try:
            job = lr_finder.start(db_session=db_session, run_in=run_in)
        except lr_finder.Busy as exc:
            message = exc.message
        except DomainError as exc:
            db_session.rollback()
            run_form.add_domain_error(posted, exc)
    if job is None and not message:  # the form again, its errors marked, in place of the form
        response = _form_page(request, db_session, posted, status_code=422)
        response.headers.update({"HX-Retarget": "#run-form", "HX-Reswap": "outerHTML"})
        return response
    return _panel(request, job, message)


@router.get("/runs/lr-finder/{job_id}", response_class=HTMLResponse)
def poll(request: Request, job_id: str = JobId) -> HTMLResponse:
    """The panel as the search stands: still polling while it runs, the curve and suggestion once done."""
    try:
        job = lr_finder.get(job_id)
    except NotFound as exc:
        return _panel(request, None, exc.message)
    return _panel(request, job, "")


def _panel(request: Request, job: dict[str, Any] | None, message: str) -> HTMLResponse:
    return render(request, "runs/_lr_finder.html", {"job": job, "message": message,
                                                    "chart": chart(job) if job and job["points"] else None})


def chart(job: dict[str, Any]) -> Markup:
    """Loss against learning rate (log x): the raw losses faint, the smoothed line, the suggestion marked."""
    points = job["points"]
    done = job["status"] == "done"
    line_key = "smooth" if done and all("smooth" in p for p in points) else "loss"
    lrs = [math.log10(p["lr"]) for p in points]
    line = [p[line_key] for p in points]
    raw = [p["raw"] for p in points]
    x_lo, x_hi = math.floor(min(lrs)), math.ceil(max(max(lrs), min(lrs) + 1))
    best = min(line)
    # Up to 4x the best (where the search stops) and never below the start: the explosion stays off the chart.
    y_hi = max(min(max(line), 4 * best), line[0]) * 1.05
    y_lo = max(0.0, best - 0.05 * (y_hi - best))
    if y_hi - y_lo < 1e-9:
        y_hi = y_lo + 1.0
    inner_w = WIDTH - MARGIN["left"] - MARGIN["right"]
    inner_h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]

    def px(v: float) -> float:
        return MARGIN["left"] + (v - x_lo) / (x_hi - x_lo) * inner_w

    def py(v: float) -> float:
        return MARGIN["top"] + (1 - (min(max(v, y_lo), y_hi) - y_lo) / (y_hi - y_lo)) * inner_h

    parts = [
        f'<svg class="scatter lr-chart" id="lr-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="lr-chart-title" data-points="{len(points)}" xmlns="http://www.w3.org/2000/svg">',
        '<title id="lr-chart-title">Training loss against learning rate</title>',
        f'<rect class="sc-frame" x="{MARGIN["left"]}" y="{MARGIN["top"]}" width="{inner_w}" height="{inner_h}"/>',
    ]
    for i in range(5):
        value = y_lo + (y_hi - y_lo) * i / 4
        y = py(value)
        parts.append(f'<line class="sc-grid" x1="{MARGIN["left"]}" x2="{WIDTH - MARGIN["right"]}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="sc-tick" x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    step = 1 if x_hi - x_lo <= 8 else 2
    for decade in range(x_lo, x_hi + 1, step):
        x = px(decade)
        parts.append(f'<line class="sc-grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN["top"]}" y2="{HEIGHT - MARGIN["bottom"]}"/>')
        parts.append(f'<text class="sc-tick" x="{x:.1f}" y="{HEIGHT - MARGIN["bottom"] + 16}" '
                     f'text-anchor="middle">1e{decade}</text>')
    parts.append(f'<text class="sc-axis" transform="translate(12 {MARGIN["top"] + inner_h / 2}) rotate(-90)" '
                 'text-anchor="middle">loss</text>')
    parts.append(f'<text class="sc-axis" x="{MARGIN["left"] + inner_w / 2}" y="{HEIGHT - 6}" '
                 'text-anchor="middle">learning rate (log scale)</text>')
    parts.append('<polyline class="lr-raw" points="' + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(lrs, raw, strict=True)) + '"/>')
    parts.append('<polyline class="lr-line" points="' + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(lrs, line, strict=True)) + '"/>')
    suggestion = job.get("suggestion")
    if done and suggestion:
        x = px(math.log10(suggestion))
        parts.append(f'<g class="lr-suggestion"><title>suggested: {escape(format_lr(suggestion))}</title>'
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN["top"]}" y2="{HEIGHT - MARGIN["bottom"]}"/>'
                     f'<text x="{x + 4:.1f}" y="{MARGIN["top"] + 12}">{escape(format_lr(suggestion))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def format_lr(value: float) -> str:
    """0.0055 → '0.0055', 3e-05 → '3e-05': as a person types a rate (two significant digits)."""
    return f"{value:.2g}"
