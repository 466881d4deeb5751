"""The compare page: runs side by side (headline table with its CSV, overlaid curves by epoch or
training time, per-class F1 and recall, accuracy against parameters, time and memory with the Pareto
front, the settings that differ) and a picker.

Everything comes from `app.compare.service`; the curves are drawn by static/js/compare.js from a
JSON block in the page, the scatter plots are server-side SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.compare import service as compare_service
from app.core.deps import SessionDep
from app.core.errors import DomainError, NotFound
from app.runs import search
from app.web.run_views import duration
from app.web.svg import ScatterPoint, scatter
from app.web.templating import filesize, render, si

router = APIRouter(tags=["pages"], include_in_schema=False)

# One colour per compared run, readable on light and dark backgrounds (Tableau 10 and two more).
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
           "#9c755f", "#17becf", "#8c564b", "#7f7f7f")
PICKER_LIMIT = 100


@dataclass(frozen=True)
class Column:
    """A headline column of the compare table (after Run and Model), by its key in RunSummary."""

    key: str
    label: str
    title: str = ""
    shown: bool = True  # by default; the others are a tick away in the table's column chooser


# Few enough shown by default that the table fits a laptop screen; compare.js remembers a reader's choice.
COLUMNS = (
    Column("total_params", "Params"),
    Column("flops", "FLOPs", shown=False),
    Column("test_accuracy", "Test acc"),
    Column("macro_f1", "Macro F1"),
    Column("best_val_accuracy", "Best val acc", shown=False),
    Column("test_loss", "Test loss", shown=False),
    Column("train_loop_s", "Training time", "the sum of the epochs' training time"),
    Column("time_per_epoch_s", "Time / epoch", "training time / epochs done", shown=False),
    Column("samples_per_sec", "Samples / s", "training samples / training time", shown=False),
    Column("training_memory_bytes", "Memory", "what training added to the trainer process"),
    Column("epochs", "Epochs", "epochs done / epochs asked for", shown=False),
)


def seconds(value: float | None) -> str:
    """Axis ticks and tooltips for times: 1.25 → '1.2 s' (under 10 s one decimal), else as duration()."""
    if value is None or value >= 10:
        return duration(value)
    return f"{value:.1f} s"


X_FORMATS = {"total_params": lambda v: si(round(v)), "train_loop_s": seconds, "training_memory_bytes": filesize}


def scatters(comparison: compare_service.Comparison) -> list[dict[str, Any]]:
    """One SVG per cost: test accuracy against it, for the runs that have both numbers, with one Pareto
    front per data set (`fronts`: [(data set, [ids])])."""
    charts = []
    for cost, label in compare_service.COSTS.items():
        runs = [(i, r) for i, r in enumerate(comparison.runs)
                if r.test_accuracy is not None and getattr(r, cost) is not None]
        if not runs:
            continue
        points = [ScatterPoint(label=f"#{r.id}", color=PALETTE[i % len(PALETTE)], x=float(getattr(r, cost)),
                               y=r.test_accuracy,
                               title=f"#{r.id} {r.name} ({r.dataset}): {r.test_accuracy:.2%} at "
                                     f"{X_FORMATS[cost](getattr(r, cost))}")
                  for i, r in runs]
        ids = [r.id for _, r in runs]
        # Each data set's front in the service's order (cheapest first): the staircase is drawn along it.
        fronts = [(group["dataset"], [i for i in comparison.pareto[cost] if i in set(group["runs"])])
                  for group in comparison.groups]
        fronts = [(dataset, front) for dataset, front in fronts if front]
        values = [p.x for p in points]
        log_x = cost == "total_params" and min(values) > 0 and max(values) / min(values) > 20
        charts.append({"cost": cost, "label": label, "fronts": fronts,
                       "svg": scatter(points, x_label=label, y_label="test accuracy", x_format=X_FORMATS[cost],
                                      fronts=[[ids.index(run_id) for run_id in front] for _, front in fronts],
                                      log_x=log_x, chart_id=f"scatter-{cost}")})
    return charts


def tutorial_tables(db_session: Any, sweep_id: str, comparison: compare_service.Comparison) -> dict[str, Any] | None:
    """With ?tutorial=ID (a "Reproduce the tutorial" sweep): the tutorial's accuracy and "CNN vs RNN" tables
    filled from the compared runs, its note (a substitute data set) and the sweep's link."""
    from app.runs.models import Sweep
    from app.sweeps import tutorial

    if not (sweep_id.isascii() and sweep_id.isdigit()) or len(sweep_id) > 9:
        return None
    sweep = db_session.get(Sweep, int(sweep_id))
    if sweep is None or sweep.kind != "tutorial":
        return None
    tables = tutorial.table(comparison)
    return {**tables, "sweep": sweep} if tables else None


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, db_session: SessionDep,
                 runs: list[str] = Query(default=[]), tutorial: str = "", q: str = "") -> HTMLResponse:
    """With ?runs=3,5 the comparison; without, the picker. A bad selection shows the picker and says why."""
    comparison, error, status_code, ids = None, None, 200, []
    try:
        ids = compare_service.parse_ids(runs)
        if ids:
            comparison = compare_service.compare(db_session=db_session, run_ids=ids)
    except DomainError as exc:
        error, status_code = exc.message, 404 if isinstance(exc, NotFound) else 422
    picker_error, recent = None, []
    try:  # the picker finds runs with the dashboard's search (archived runs too: they are still comparable)
        query = search.parse(q[:search.MAX_QUERY_CHARS + 1])
        if not query.archived_given:
            query.archived = None
        recent = search.page(db_session=db_session, query=query, limit=PICKER_LIMIT)[0]
    except DomainError as exc:
        picker_error = exc.message
    context: dict[str, Any] = {"comparison": comparison, "error": error, "selected": ids, "recent": recent,
                               "palette": PALETTE, "max_runs": compare_service.MAX_RUNS,
                               "duration": duration, "seconds": seconds, "columns": COLUMNS,
                               "q": q, "picker_error": picker_error, "search_help": search.HOW}
    if comparison is not None:
        context["tutorial"] = tutorial_tables(db_session, tutorial, comparison)
        context["scatters"] = scatters(comparison)
        context["colours"] = {r.id: PALETTE[i % len(PALETTE)] for i, r in enumerate(comparison.runs)}
        context["grouped"] = [(group["dataset"], [r for r in comparison.runs if r.id in group["runs"]])
                              for group in comparison.groups]
        context["chart_data"] = {"runs": [{"id": r.id, "name": r.name, "color": PALETTE[i % len(PALETTE)],
                                           "curves": r.curves} for i, r in enumerate(comparison.runs)]}
    return render(request, "compare/page.html", context, status_code=status_code)
