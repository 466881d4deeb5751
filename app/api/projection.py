"""GET /api/runs/{id}/projection: the run's test set in 2-D (app/runs/projection.py), or 404 saying why not."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.errors import ERROR_RESPONSES
from app.core.deps import RunId, SessionDep
from app.runs import projection

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)


@router.get("/api/runs/{run_id}/projection")
def get_projection(db_session: SessionDep, run_id: RunId) -> dict[str, Any]:
    """The penultimate layer's activations on (up to 2,000) test samples, projected to 2-D with PCA:
    `x`, `y`, `true`, `pred`, `index` (test-split indices), `class_names`, `explained_variance`."""
    return projection.get(db_session=db_session, run_id=run_id)
