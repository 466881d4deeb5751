"""Run management on the run page: tags, name and note, archive, delete (app/runs/manage.py).

Each form posts with htmx (so the CSRF header goes with it) and gets the management panel back
(`runs/_manage.html`); delete sends the browser to the dashboard. The dashboard's bulk actions use
the JSON API (static/js/dashboard.js).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.core.deps import SessionDep
from app.core.errors import DomainError
from app.runs import manage
from app.runs.models import Run
from app.web.architectures import FormDep
from app.web.runs import RunPageDep, _redirect
from app.web.templating import is_htmx, render

router = APIRouter(tags=["pages"], include_in_schema=False)


def manage_context(run: Run) -> dict[str, Any]:
    """What runs/_manage.html needs besides the run: its note as safe HTML and its size on disk."""
    return {"note_html": manage.render_note(run.note), "disk_bytes": manage.disk_bytes(run.id),
            "max_note": manage.MAX_NOTE_LENGTH, "max_tags": manage.MAX_TAGS_PER_RUN}


def _panel(request: Request, run: Run, *, messages: list[str] = (), notices: list[str] = (),
           rename: bool = False, status_code: int = 200) -> Response:
    if not is_htmx(request):  # a form posted without htmx: back to the page
        return RedirectResponse(f"/runs/{run.id}", status_code=303)
    return render(request, "runs/_manage.html", {"run": run, **manage_context(run), "messages": list(messages),
                                                 "notices": list(notices), "rename": rename},
                  status_code=status_code)


def _failed(request: Request, db_session: Any, run: Run, exc: DomainError) -> Response:
    db_session.rollback()
    db_session.refresh(run)
    return _panel(request, run, messages=[exc.message], status_code=422)


@router.post("/runs/{run_id}/tags", response_class=HTMLResponse)
def save_tags(request: Request, db_session: SessionDep, run: RunPageDep, form: FormDep) -> Response:
    """Replace the run's tags with the comma-separated names of the form."""
    names = [n for n in str(form.get("tags", "")).split(",") if n.strip()]
    try:
        run = manage.set_tags(db_session=db_session, run_id=run.id, tags=names)
    except DomainError as exc:
        return _failed(request, db_session, run, exc)
    return _panel(request, run, notices=["Tags saved."])


@router.post("/runs/{run_id}/edit", response_class=HTMLResponse)
def save_name_and_note(request: Request, db_session: SessionDep, run: RunPageDep, form: FormDep) -> Response:
    """Rename the run and replace its note; the page's title follows (out of band)."""
    try:
        run = manage.update_run(db_session=db_session, run_id=run.id, name=str(form.get("name", run.name)),
                                note=str(form.get("note", "")))
    except DomainError as exc:
        return _failed(request, db_session, run, exc)
    return _panel(request, run, notices=["Saved."], rename=True)


@router.post("/runs/{run_id}/archive", response_class=HTMLResponse)
def archive(request: Request, db_session: SessionDep, run: RunPageDep, form: FormDep) -> Response:
    archived = str(form.get("archived", "1")) == "1"
    manage.set_archived(db_session=db_session, run_ids=[run.id], archived=archived)
    db_session.refresh(run)
    return _panel(request, run, notices=["Archived: hidden from the dashboard unless “Show archived” is ticked."
                                         if archived else "Back on the dashboard."])


@router.post("/runs/{run_id}/delete", response_class=HTMLResponse)
def delete(request: Request, db_session: SessionDep, run: RunPageDep) -> Response:
    """Delete the run with its rows and files (the button asked for confirmation), then the dashboard."""
    try:
        manage.delete_runs(db_session=db_session, run_ids=[run.id])
    except DomainError as exc:
        return _failed(request, db_session, run, exc)
    return _redirect(request, "/")
