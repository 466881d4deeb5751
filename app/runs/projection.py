"""A run's test-set projection: the `projection` event its trainer emitted (app/engine/embedding.py).

`get` answers the stored payload (the latest, should a resumed run have made two) checked for shape
and types, at most MAX_POINTS points, plus `misclassified` (how many points the model got wrong); NotFound says in words why a run has none
(still training, trained before projections existed, an external run that never sent one).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.runs import service as runs_service
from app.runs.models import TERMINAL_STATUSES, RunEvent

COLUMNS = ("x", "y", "true", "pred", "index")
MAX_POINTS = 2000  # as app/engine/embedding.py's MAX_SAMPLES (torch-free here)


def get(*, db_session: Session, run_id: int) -> dict[str, Any]:
    run = runs_service.get(db_session=db_session, run_id=run_id)
    payload = db_session.scalars(
        select(RunEvent.payload).where(RunEvent.run_id == run_id, RunEvent.kind == "projection")
        .order_by(RunEvent.seq.desc()).limit(1)
    ).first()
    if not _well_formed(payload):
        if run.external:
            why = "it was logged by its own script, which sent no projection"
        elif run.status not in TERMINAL_STATUSES:
            why = f"it is {run.status}: the projection is made after the test evaluation, at the end of training"
        else:
            why = (f"it {run.status} without one (runs trained before projections existed, and runs stopped before "
                   "their test evaluation, have none)")
        raise NotFound(f"run {run_id} has no test-set projection: {why}")
    # The trainer sends at most MAX_POINTS; a hand-sent event (ingest API) may hold more: draw that many.
    payload = {**payload, **{column: payload[column][:MAX_POINTS] for column in COLUMNS}}
    count = len(payload["x"])
    misclassified = sum(1 for t, p in zip(payload["true"], payload["pred"], strict=True) if t != p)
    return {"run_id": run_id, "dataset": run.dataset, **payload, "count": count, "misclassified": misclassified}


def _well_formed(payload: Any) -> bool:
    """Columns of one length, numbers for x and y, whole numbers for the rest (a hand-sent event may be anything)."""
    if not isinstance(payload, dict) or not all(isinstance(payload.get(c), list) for c in COLUMNS):
        return False
    lengths = {len(payload[c]) for c in COLUMNS}
    if len(lengths) != 1 or lengths == {0}:
        return False
    numbers = all(_is_number(v) for c in ("x", "y") for v in payload[c][:MAX_POINTS])
    wholes = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for c in ("true", "pred", "index")
                 for v in payload[c][:MAX_POINTS])
    return numbers and wholes


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
