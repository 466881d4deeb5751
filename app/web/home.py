"""The home page: the runs dashboard (live status, progress, headline results, filters, quick starts)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.core.config import get_settings
from app.core.deps import SessionDep
from app.datasets import registry as datasets_registry
from app.runs import service as runs_service
from app.runs.models import STATUSES
from app.web import run_views
from app.web.runs import launch_options
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, db_session: SessionDep, status: str = "", dataset: str = "") -> HTMLResponse:
    """Runs newest first, filtered by status and data set; htmx asks for the table only."""
    runs, total = runs_service.list_(db_session=db_session, status=status or None, dataset=dataset or None,
                                     limit=200)
    rows = [{"run": run, "progress": run_views.progress(run)} for run in runs]
    return render(request, "runs/dashboard.html", {
        "rows": rows, "total": total, "status": status, "dataset": dataset, "statuses": STATUSES,
        "datasets": [info.name for info in datasets_registry.list_datasets(get_settings().data_dir)],
        "launch_options": launch_options(),
    }, partial="runs/_table.html")
