"""A run's per-layer histograms over epochs (the engine's `histograms` events, app/engine/histograms.py)
for the run page's panel and `GET /api/runs/{id}/histograms`.

Rows are read through the `(run_id, kind, seq)` index as plain columns. A resumed run repeats the epochs
after its checkpoint: an event drops the ones at or after its epoch that came before it, as the run page
does with its curves, so each epoch appears once, from the run's latest history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.core.errors import NotFound
from app.runs.models import Run, RunEvent

KIND = "histograms"
MAX_EPOCHS = 1000


def histograms(run_id: int, *, last: int = MAX_EPOCHS) -> dict[str, Any]:
    """The run's histogram events as of its `last_seq`, one per epoch in epoch order (the latest `last`),
    with the warnings flagged over the whole run (layer → kinds)."""
    with session_scope(write=False) as db_session:
        last_seq = db_session.execute(select(Run.last_seq).where(Run.id == run_id)).scalar_one_or_none()
        if last_seq is None:
            raise NotFound(f"run {run_id} does not exist")
        rows = db_session.connection().execute(
            select(RunEvent.seq, RunEvent.payload)
            .where(RunEvent.run_id == run_id, RunEvent.kind == KIND, RunEvent.seq <= last_seq)
            .order_by(RunEvent.seq)
        ).all()
    by_epoch: dict[int, dict[str, Any]] = {}
    for seq, payload in rows:
        epoch = payload.get("epoch")
        if not isinstance(epoch, int):
            continue
        for later in [e for e in by_epoch if e >= epoch]:
            del by_epoch[later]
        by_epoch[epoch] = {"seq": seq, **payload}
    epochs = [by_epoch[e] for e in sorted(by_epoch)][-last:] if last else []
    flagged: dict[str, list[str]] = {}
    for event in by_epoch.values():
        for warning in event.get("warnings") or []:
            kinds = flagged.setdefault(str(warning.get("layer")), [])
            if warning.get("kind") not in kinds:
                kinds.append(warning.get("kind"))
    return {"run_id": run_id, "last_seq": last_seq, "epochs": epochs, "flagged": flagged}
