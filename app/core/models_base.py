"""Column helpers shared by the domain models."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator

# The largest id, seq or count every database column holds: ids are INTEGER columns, which are
# 32-bit on PostgreSQL (SQLite's are 64-bit). A larger number in a path or query names nothing.
# (app/core/deps.py bounds every int a route takes with it; here so that schemas need no FastAPI.)
DB_INT_MAX = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime | None:
    """Columns hold naive UTC times; answers carry them with their offset (RFC 3339, `+00:00`), so
    clients read them as UTC rather than as their local time."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# A datetime field of a response model: stored naive UTC, answered with its offset.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
