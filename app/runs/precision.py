"""What precision a run trains in and why: the engine's `precision` event (app/engine/runtime.Precision),
stored with the run's events when training starts and shown on the run page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.runs.models import RunEvent

KIND = "precision"
NAMES = ("fp32", "bf16", "fp16")


def recorded_precision(db_session, run_id: int) -> dict[str, Any] | None:
    """{"precision": "bf16", "reason": "…", "channels_last": bool} from the run's latest start (a resumed run
    chooses again), or None before the trainer has chosen (queued, or a run from before the setting)."""
    payload = db_session.execute(
        select(RunEvent.payload).where(RunEvent.run_id == run_id, RunEvent.kind == KIND)
        .order_by(RunEvent.seq.desc()).limit(1)
    ).scalar_one_or_none()
    if not isinstance(payload, dict) or payload.get("precision") not in NAMES:
        return None
    return {"precision": payload["precision"], "reason": str(payload.get("reason") or ""),
            "channels_last": bool(payload.get("channels_last"))}
