"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from app.core.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(db_session: SessionDep) -> dict[str, str]:
    """200 when the server answers and the database is reachable."""
    db_session.execute(text("SELECT 1"))
    return {"status": "ok", "database": "ok"}
