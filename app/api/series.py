"""Chart data that stays light: a run's curves downsampled for charts (app/runs/series.py)."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query

from app.api.errors import ERROR_RESPONSES
from app.core.deps import RunId
from app.core.errors import InvalidInput
from app.runs import series as runs_series

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)



@router.get("/api/runs/{run_id}/series")
async def run_series(
    run_id: RunId,
    x: Literal["step", "epoch", "time"] = Query("step", description="what `from` and `to` count: step, "
                                                  "fractional epoch, or seconds since the run's first row"),
    start: float | None = Query(None, alias="from", allow_inf_nan=False, description="the range's low end, in `x`"),
    end: float | None = Query(None, alias="to", allow_inf_nan=False, description="the range's high end, in `x`"),
    points: int = Query(runs_series.DEFAULT_POINTS, ge=runs_series.MIN_POINTS, le=runs_series.MAX_POINTS,
                        description="at most this many points per series (MinMaxLTTB); all rows when fewer"),
    events: int = Query(0, ge=0, le=runs_series.MAX_EVENTS,
                        description="also the latest this many events of other kinds, and the latest step event"),
) -> dict[str, Any]:
    """A run's chart data as of its `last_seq`: step curves (training loss and accuracy) downsampled to
    at most `points` points each in [from, to] with a shape-preserving method (MinMaxLTTB), whole when
    the range holds fewer rows; epoch rows whole. Follow `/api/runs/{id}/events?after=<last_seq>` for
    what comes next."""
    if start is not None and end is not None and start > end:
        raise InvalidInput("`from` must not be after `to`", [{"field": "from", "message": "after `to`"}])
    return await anyio.to_thread.run_sync(lambda: runs_series.series(
        run_id, x=x, start=start, end=end, points=points, events=events))
