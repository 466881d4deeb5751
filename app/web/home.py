"""The home page: a placeholder until the runs dashboard takes over `/`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.architectures import service as architectures_service
from app.core.deps import SessionDep
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home_page(request: Request, db_session: SessionDep) -> HTMLResponse:
    """Where to start: define an architecture (runs and comparisons come next)."""
    _, architecture_count = architectures_service.list_(db_session=db_session, limit=1)
    return render(request, "index.html", {"architecture_count": architecture_count})
