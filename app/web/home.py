"""The home page: the runs dashboard (live status, progress, headline results, filters, quick starts),
its rows one at a time, and the SSE stream that keeps them live."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.deps import OptionalSeqQuery, RunCursorQuery, SessionDep
from app.core.errors import NotFound
from app.datasets import registry as datasets_registry
from app.runs import service as runs_service
from app.runs.models import STATUSES
from app.runs.stream import resume_cursor
from app.web import run_views
from app.web.runs import RunPageDep, launch_options
from app.web.templating import render, templates

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, db_session: SessionDep, status: str = "", dataset: str = "",
              archived: str = "") -> HTMLResponse:
    """Runs newest first, filtered by status and data set, archived ones only with `archived` (shown
    with the others); htmx asks for the table only."""
    runs, total = runs_service.list_(db_session=db_session, status=status or None, dataset=dataset or None,
                                     archived=None if archived else False, limit=200)
    rows = [{"run": run, "progress": _progress(db_session, run)} for run in runs]
    return render(request, "runs/dashboard.html", {
        "rows": rows, "total": total, "status": status, "dataset": dataset, "statuses": STATUSES,
        "archived": "1" if archived else "",
        "datasets": [info.name for info in datasets_registry.list_datasets(get_settings().data_dir)],
        "launch_options": launch_options(),
    }, partial="runs/_table.html")


@router.get("/runs/{run_id}/row", response_class=HTMLResponse)
def dashboard_row(request: Request, db_session: SessionDep, run: RunPageDep) -> HTMLResponse:
    """One row of the runs table."""
    return render(request, "runs/_row.html", {"run": run, "progress": _progress(db_session, run)})


def _progress(db_session, run) -> run_views.Progress:
    return run_views.progress(run, runs_service.latest_step(db_session=db_session, run=run))


@router.get("/stream/runs")
async def dashboard_stream(request: Request, after: OptionalSeqQuery = None, newest: RunCursorQuery = 0) -> Response:
    """SSE for the runs dashboard (htmx's sse extension): `row-<id>` carries the run's re-rendered
    row whenever its status, progress or accuracies change, `run-new` tells the table a run was
    created (above `newest`, the newest run the page lists). Resumes after a feed id (Last-Event-ID
    or ?after=)."""
    hub = request.app.state.stream_hub
    return hub.response(hub.dashboard_rows(resume_cursor(request, after), render_rows, newest))


def render_rows(run_ids: list[int]) -> dict[int, str]:
    """Dashboard rows as HTML, by run id (deleted runs are left out); called in a worker thread."""
    template = templates.get_template("runs/_row.html")
    rows = {}
    with session_scope(write=False) as db_session:
        for run_id in run_ids:
            try:
                run = runs_service.get(db_session=db_session, run_id=run_id)
            except NotFound:
                continue
            rows[run_id] = template.render(run=run, progress=_progress(db_session, run)).strip()
    return rows
