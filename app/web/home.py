"""The home page: the runs dashboard (live status, progress, headline results, filters, quick starts),
its rows one at a time, and the SSE stream that keeps them live."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.deps import OptionalSeqQuery, RunCursorQuery, SessionDep
from app.core.errors import InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.runs import search
from app.runs import service as runs_service
from app.runs.models import STATUSES
from app.runs.stream import resume_cursor
from app.web import run_views
from app.web.runs import RunPageDep, launch_options
from app.web.templating import render, templates

router = APIRouter(tags=["pages"], include_in_schema=False)


PAGE_ROWS = 100
# Sortable columns of the dashboard table: (query value, header).
SORT_COLUMNS = {"created": "Created", "name": "Run", "status": "Status", "dataset": "Data set",
                "val_accuracy": "Best val acc", "test_accuracy": "Test acc", "params": "Params"}


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, db_session: SessionDep, status: str = "", dataset: str = "",
              archived: str = "", q: str = "", sort: str = "created", order: str = "desc",
              cursor: str = "") -> HTMLResponse:
    """Runs newest first (or sorted by a column), filtered by status, data set and a search (`q`: name words,
    tag:, val_accuracy>0.97…; app/runs/search.py), archived ones only with `archived`; keyset pages of
    PAGE_ROWS (`cursor`). The filters live in the URL, so a view can be shared. htmx asks for the table."""
    error, rows, total, next_cursor = None, [], 0, None
    sort = sort if sort in SORT_COLUMNS else "created"
    order = "asc" if order == "asc" else "desc"
    try:
        query = search.parse(q[:search.MAX_QUERY_CHARS + 1])
        query.statuses += [status] if status else []
        query.datasets += [dataset] if dataset else []
        if not query.archived_given:
            query.archived = None if archived else False
        runs, next_cursor, total = search.page(db_session=db_session, query=query, sort=sort,
                                               descending=order == "desc", cursor=cursor[:400] or None,
                                               limit=PAGE_ROWS)
        rows = [{"run": run, "progress": _progress(db_session, run)} for run in runs]
    except InvalidInput as exc:
        error = exc.message
    view = {"status": status, "dataset": dataset, "archived": "1" if archived else "", "q": q,
            "sort": "" if sort == "created" else sort, "order": "" if order == "desc" else order}

    def url(**changes: str) -> str:
        """This view's URL with `changes` (a sort, a page): empty values left out."""
        params = {key: value for key, value in {**view, **changes}.items() if value}
        return "/?" + urlencode(params) if params else "/"

    return render(request, "runs/dashboard.html", {
        "rows": rows, "total": total, "status": status, "dataset": dataset, "statuses": STATUSES, "url": url,
        "archived": "1" if archived else "", "q": q, "sort": sort, "order": order, "cursor": cursor,
        "next_cursor": next_cursor, "search_error": error, "sort_columns": SORT_COLUMNS, "search_help": search.HOW,
        "datasets": [info.name for info in datasets_registry.list_datasets(get_settings().data_dir)],
        "launch_options": launch_options(),
    }, partial="runs/_table.html", status_code=422 if error else 200)


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
