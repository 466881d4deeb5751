"""The learning-rate finder's JSON API: start a range test for a run body, then poll it.

POST /api/lr-finder takes a run body (validated as POST /api/runs validates one, plus `steps`) and
answers 202 with the job (`id`, `status`: running); GET /api/lr-finder/{id} answers the job as it
stands: `points` ([{lr, loss (moving average), raw, smooth (when done)}]), `suggestion`, `stopped`,
`error`. The search runs in a process of its own (app/runs/lr_finder.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from app.api.errors import ERROR_RESPONSES
from app.core.deps import SessionDep
from app.runs import lr_finder

router = APIRouter(tags=["lr-finder"], responses={**ERROR_RESPONSES, 429: {"description": "Too many searches running"}})


@router.post("/api/lr-finder", status_code=202)
def start(db_session: SessionDep, body: lr_finder.LrFinderCreate) -> dict[str, Any]:
    """Start a learning-rate range test for this run body; poll GET /api/lr-finder/{id} for its curve."""
    return lr_finder.start(db_session=db_session, run_in=body, steps=body.steps)


@router.get("/api/lr-finder/{job_id}")
def get(job_id: str = Path(pattern=r"^[0-9a-f]{1,64}$")) -> dict[str, Any]:
    """The search as it stands: status (running | done | failed), the points so far, the suggestion."""
    return lr_finder.get(job_id)
