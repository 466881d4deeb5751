"""Compare runs: one JSON answer with everything the compare page shows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from app.api.errors import ERROR_RESPONSES
from app.compare import service as compare_service
from app.core.deps import SessionDep

router = APIRouter(tags=["compare"], responses=ERROR_RESPONSES)


@router.get("/api/compare")
def compare_runs(db_session: SessionDep, runs: list[str] = Query(
        default=[], description="run ids: runs=3,5 or runs=3&runs=5 (at most 12)")) -> dict[str, Any]:
    """Runs side by side: headline numbers, per-epoch curves, the settings that differ, the best run per
    column, and the runs on the accuracy-versus-cost Pareto fronts (parameters, training time, training memory)."""
    ids = compare_service.parse_ids(runs)
    return compare_service.compare(db_session=db_session, run_ids=ids).to_dict()
