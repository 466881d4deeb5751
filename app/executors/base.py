"""What the web process runs (an Executor: the scheduler) and what it drives (a Launcher).

The scheduler (app/executors/scheduler.py) owns claiming, slot accounting, cancellation, the
hang and start checks, reaping and recovery after a restart, all through app/runs/lifecycle.py.
A launcher only starts trainer processes somewhere and answers questions about them; it never
touches a run's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class Executor(Protocol):
    def start(self) -> None:
        """Adopt or interrupt runs left by a previous server, then begin scheduling."""

    def stop(self) -> None:
        """Stop scheduling (running trainers keep going in their own process groups)."""

    def wake(self) -> None:
        """A hint that something changed (a run was queued or cancelled): look now."""


@dataclass(frozen=True)
class Resources:
    """What a launcher offers: CPU threads and GPU ids; a cluster also says how many runs it holds
    (`slots`, else TRAINBOARD_SLOTS) and with how many threads each (else the cores are split)."""

    cpu_threads: int
    gpus: tuple[str, ...] = ()
    slots: int | None = None
    threads_per_run: int | None = None


@dataclass(frozen=True)
class Assignment:
    """What one run gets: torch threads and at most one GPU; with `ingest_token`, its trainer
    reports over the ingest API with that token instead of writing the database."""

    threads: int
    gpu: str | None = None
    ingest_token: str | None = None
    device: str = "auto"  # the run's device setting (a cluster launcher asks for a GPU by it)


@dataclass
class Handle:
    """A launched (or adopted) trainer, as its launcher knows it."""

    run_id: int
    pid: int | None
    gpu: str | None = None
    adopted: bool = False


@dataclass(frozen=True)
class RunRef:
    """The fields of a run a launcher needs to adopt its trainer after a restart."""

    id: int
    pid: int | None
    worker: str | None


class Launcher(Protocol):
    # The owner written to `runs.worker` for runs it launches, e.g. "local:HOST".
    owner: str
    # True when its trainers share no disk or database with the server (they report over the
    # ingest API with their run's token); a silent one counts as lost after heartbeat_timeout_s.
    remote: bool

    def resources(self) -> Resources:
        """The CPU threads and GPUs it offers."""

    def prepare(self, wanted: bool = True) -> None:
        """Called every scheduler tick: e.g. keep a warm standby trainer. `wanted` is False while every
        slot is busy and no run is queued: a standby could not be used yet, so none is started."""

    def launch(self, run_id: int, assignment: Assignment) -> Handle:
        """Start a trainer for a claimed (`starting`) run; raise OSError when it cannot be started."""

    def alive(self, handle: Handle) -> bool:
        """Whether the trainer is still running."""

    def signal(self, handle: Handle, what: Literal["cancel", "kill"]) -> None:
        """"cancel": ask it to stop at its next step; "kill": stop it now (its whole process group)."""

    def exit_reason(self, handle: Handle) -> str:
        """Why a trainer that is no longer alive ended, in words (with its log's last error line)."""

    def adopt(self, run: RunRef) -> Handle | None:
        """After a restart: a handle on the run's trainer when it is still alive and really ours."""

    def close(self) -> None:
        """The scheduler stops: release what is idle (e.g. the standby), never a training run."""
