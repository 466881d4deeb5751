"""Executors start trainer processes for queued runs: `local` (default) or `ray`."""

from __future__ import annotations

from app.core.config import Settings
from app.executors.base import Executor


def make_executor(settings: Settings) -> Executor:
    """The executor the settings ask for."""
    if settings.executor == "local":
        from app.executors.local import LocalExecutor

        return LocalExecutor(settings)
    raise ValueError(f"unknown executor '{settings.executor}': use 'local'")
