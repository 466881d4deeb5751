"""The executor protocol: the web process owns one, started and stopped by the app's lifespan."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def start(self) -> None:
        """Pick up queued runs, reap orphans, begin scheduling."""

    def stop(self) -> None:
        """Stop scheduling (running trainers keep going in their own process groups)."""

    def wake(self) -> None:
        """A hint that something changed (a run was queued or cancelled): look now."""
