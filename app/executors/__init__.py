"""Executors: a scheduler (claims, slots, cancels, checks) driving a launcher that starts trainers."""

from __future__ import annotations

import importlib.util

from app.core.config import Settings
from app.executors.base import Executor

AVAILABLE = ("local", "ray")


class ExecutorUnavailable(ValueError):
    """TRAINBOARD_EXECUTOR names an executor this build cannot run."""


def check_executor(settings: Settings) -> None:
    """Raise ExecutorUnavailable, with what to do instead, unless the configured executor exists."""
    if settings.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ExecutorUnavailable("TRAINBOARD_EXECUTOR=ray needs the Ray extra: pip install 'trainboard[ray]'")
        return
    if settings.executor not in AVAILABLE:
        raise ExecutorUnavailable(f"TRAINBOARD_EXECUTOR={settings.executor} is unknown: use local or ray")


def make_executor(settings: Settings) -> Executor:
    """The scheduler with the launcher the settings ask for."""
    check_executor(settings)
    from app.executors.scheduler import Scheduler

    if settings.executor == "ray":
        from app.executors.ray import RayLauncher, RayUnavailable

        try:
            return Scheduler(settings, RayLauncher(settings))
        except RayUnavailable as exc:
            raise ExecutorUnavailable(str(exc)) from exc
    from app.executors.local import LocalLauncher

    return Scheduler(settings, LocalLauncher(settings))
