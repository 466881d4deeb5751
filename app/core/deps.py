"""Annotated dependencies shared by the API and web routers, and the typed ids and counts of paths
and queries: every int a route takes from a URL is bounded here, so a number the database cannot
hold (SQLite and PostgreSQL integers are 64-bit) is a 422 before any query runs, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import _session_factory
from app.core.models_base import DB_INT_MAX


def get_db(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request; writing methods take the write lock first.
    (Here, not in app/core/db.py: trainers use the database without importing FastAPI.)"""
    session = _session_factory(request.method not in ("GET", "HEAD"))()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

RunId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the run's id")]
ArchitectureId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the architecture's id")]
SweepId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the sweep's id")]
SampleIndex = Annotated[int, Path(ge=0, le=DB_INT_MAX, description="0-based index of the sample in its split")]

# Queries. Each alias is a type: give the default in the signature (`offset: OffsetQuery = 0`).
OffsetQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="rows to skip")]
SeqQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="events after this seq")]
OptionalSeqQuery = Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description="events after this seq")]
EpochQuery = Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description="an epoch (1-based)")]
ClassQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="a class index")]
PageQuery = Annotated[int, Query(ge=1, le=DB_INT_MAX, description="a page (1-based)")]
ArchitectureIdQuery = Annotated[int | None, Query(ge=1, le=DB_INT_MAX, description="an architecture's id")]
RunCursorQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="a run id (0: none)")]
