"""Compare runs: one JSON answer with everything the compare page shows, and its table as CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.errors import ERROR_RESPONSES
from app.compare import service as compare_service
from app.core.deps import SessionDep

router = APIRouter(tags=["compare"], responses=ERROR_RESPONSES)
RUNS_HELP = "run ids: runs=3,5 or runs=3&runs=5 (at most 12)"


@router.get("/api/compare")
def compare_runs(db_session: SessionDep, runs: list[str] = Query(default=[], description=RUNS_HELP)) -> dict[str, Any]:
    """Runs side by side: headline numbers, curves by epoch and training time, per-class F1 and recall
    per data set, the settings that differ, the best run per column, and the runs on the
    accuracy-versus-cost Pareto fronts (parameters, training time, training memory)."""
    ids = compare_service.parse_ids(runs)
    return compare_service.compare(db_session=db_session, run_ids=ids).to_dict()


@router.get("/api/compare.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the compare table as CSV"}})
def compare_runs_csv(db_session: SessionDep, runs: list[str] = Query(default=[], description=RUNS_HELP)) -> Response:
    """The compare table as CSV, a row per run: id, name, data set, model, kind, status, the headline
    numbers (raw: fractions, seconds, bytes), epochs, and a column per setting that differs."""
    ids = compare_service.parse_ids(runs)
    comparison = compare_service.compare(db_session=db_session, run_ids=ids)
    filename = "compare-" + "-".join(str(run_id) for run_id in ids) + ".csv"
    return Response(compare_service.table_csv(comparison), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
