"""Runs, architectures and sweeps record who created them: the request's user (app/auth/context.py)."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.architectures.models import Architecture
from app.auth.context import CURRENT_USER
from app.runs.models import Run, Sweep


@event.listens_for(Session, "before_flush")
def _record_creator(session: Session, _flush_context, _instances) -> None:
    user_id = CURRENT_USER.get()
    if user_id is None:
        return
    for obj in session.new:
        if isinstance(obj, Run | Architecture | Sweep) and obj.created_by is None:
            obj.created_by = user_id
