"""Column helpers shared by the domain models."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime | None:
    """Columns hold naive UTC times; answers carry them with their offset (RFC 3339, `+00:00`), so
    clients read them as UTC rather than as their local time."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# A datetime field of a response model: stored naive UTC, answered with its offset.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
