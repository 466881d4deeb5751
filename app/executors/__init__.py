"""Executors: a scheduler (claims, slots, cancels, checks) driving a launcher that starts trainers."""

from __future__ import annotations

from app.core.config import Settings
from app.executors.base import Executor

AVAILABLE = ("local",)


class ExecutorUnavailable(ValueError):
    """TRAINBOARD_EXECUTOR names an executor this build cannot run."""


def check_executor(settings: Settings) -> None:
    """Raise ExecutorUnavailable, with what to do instead, unless the configured executor exists."""
    if settings.executor in AVAILABLE:
        return
    if settings.executor == "ray":
        raise ExecutorUnavailable("TRAINBOARD_EXECUTOR=ray is not available yet: use local")
    raise ExecutorUnavailable(f"TRAINBOARD_EXECUTOR={settings.executor} is unknown: use local")


def make_executor(settings: Settings) -> Executor:
    """The scheduler with the launcher the settings ask for."""
    check_executor(settings)
    from app.executors.local import LocalLauncher
    from app.executors.scheduler import Scheduler

    return Scheduler(settings, LocalLauncher(settings))
