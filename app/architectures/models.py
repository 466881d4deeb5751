"""Saved architectures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.models_base import utcnow


class Architecture(Base):
    __tablename__ = "architectures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Run settings saved with it (a run `config`, only what was given: e.g. its Keras compile/fit calls);
    # the launch form and POST /api/runs start from them.
    training: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # Summary figures kept for the list page (recomputed on every save).
    total_params: Mapped[int] = mapped_column(Integer, default=0)
    trainable_params: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Who created it (a user id; None when the server has no accounts).
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
