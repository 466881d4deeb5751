"""The scheduler: a thread in the web process that drives any launcher (app/executors/base.py).

Every tick (0.1 s, or at once when woken):
- watches its trainers: one that ended while its run is still `starting` or `running` fails the
  run with the launcher's exit reason (or cancels it, when a cancel was asked for);
- enforces cancellation: "cancel" to the trainer at once, "kill" after `cancel_grace_s`;
- fails `starting` runs whose trainer has not reported within `start_timeout_s` (and kills it);
- lets active sweeps queue their next trials (app/sweeps/service.py `advance`);
- claims queued runs in id order while slots are free (adopted trainers count) and launches them;
- once a second, fails and kills its trainers that are alive but silent past `hung_timeout_s`,
  interrupts runs of other owners whose heartbeat stopped (their trainer vanished), and fails
  external runs (logged by a user's own script, never claimed: they are never queued) whose
  script stopped sending heartbeats for `heartbeat_timeout_s`.

On start it recovers what a previous server left: a `starting` or `running` run whose trainer is
still alive on this host is adopted (a slot, hang-checked, cancellable); one whose trainer is gone
becomes `interrupted` (resumable). Every status change goes through app/runs/lifecycle.py.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import session_scope
from app.core.models_base import utcnow
from app.executors.base import Assignment, Handle, Launcher, RunRef
from app.runs import ingest, lifecycle
from app.runs.events import append_events
from app.runs.models import ACTIVE_STATUSES, QUEUED, STARTING, Run, RunEvent
from app.runs.service import latest_checkpoint_epoch

TICK_S = 0.1
REAP_EVERY_S = 1.0
SWEEPS_EVERY_S = 0.3


@dataclass
class Tracked:
    handle: Handle
    cancel_sent_at: float | None = None


class Scheduler:
    def __init__(self, settings: Settings, launcher: Launcher):
        self.settings = settings
        self.launcher = launcher
        self.host = socket.gethostname()
        self.active: dict[int, Tracked] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._last_reap = 0.0
        self._last_sweeps = 0.0
        self._read_resources()

    def _read_resources(self) -> None:
        """Slots and threads per run: from the launcher (a cluster's size may change), else the settings."""
        resources = self.launcher.resources()
        self.gpus = list(resources.gpus)
        self.slots = resources.slots if resources.slots is not None else self.settings.slots
        # Split the cores between the slots, keeping one for the web process and the next standby's
        # warm-up: oversubscribed OpenMP threads slow small models down by up to 10x (measured).
        self.threads_per_run = (self.settings.trainer_threads or resources.threads_per_run
                                or max(1, (resources.cpu_threads - 1) // self.settings.slots))

    # -- Executor ----------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.launcher.close()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # never let the scheduler die; the next tick retries
                print(f"trainboard scheduler: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            self._wake.wait(TICK_S)
            self._wake.clear()

    def tick(self) -> None:
        self._watch()
        self._enforce_cancels()
        self._check_starts()
        self._advance_sweeps()
        self._start_queued()
        self.launcher.prepare(self._standby_wanted())
        now = time.monotonic()
        if now - self._last_reap > REAP_EVERY_S:
            self._last_reap = now
            self._read_resources()
            self._reap()

    def _advance_sweeps(self) -> None:
        """Active sweeps queue their next trials (bounded by this scheduler's slots) and end when done."""
        from app.sweeps import service as sweeps_service

        now = time.monotonic()
        if now - self._last_sweeps < SWEEPS_EVERY_S:
            return
        self._last_sweeps = now
        with session_scope(write=False) as db_session:  # the common case, no active sweep, stays read-only
            if not sweeps_service.any_active(db_session):
                return
        with session_scope() as db_session:
            sweeps_service.advance(db_session, self.slots)

    def _standby_wanted(self) -> bool:
        """Whether a warm standby trainer could be used soon: a slot is free, or a queued run waits for
        one. With every slot busy and nothing queued its warm-up (`import torch`, ~3 s of a core) would
        only take CPU from the runs training; it starts when a slot frees or a run is queued."""
        if len(self.active) < self.slots:
            return True
        if not self.settings.warm_workers or getattr(self.launcher, "standby", None) is not None:
            return False  # no standby to start (off, or one is warm already): no need to ask the database
        with session_scope(write=False) as db_session:
            return db_session.scalar(select(Run.id).where(Run.status == QUEUED).limit(1)) is not None

    # -- slots -------------------------------------------------------------------------------
    def _free_gpu(self) -> str | None:
        if not self.gpus:
            return None
        used = {t.handle.gpu for t in self.active.values()}
        return next((g for g in self.gpus if g not in used), self.gpus[0])

    def _start_queued(self) -> None:
        while len(self.active) < self.slots:
            with session_scope(write=False) as db_session:  # the common case, nothing queued, stays read-only
                if db_session.scalar(select(Run.id).where(Run.status == QUEUED).limit(1)) is None:
                    return
            token, device = None, "auto"
            with session_scope() as db_session:
                run_id = lifecycle.claim_next(db_session, self.launcher.owner)
                if run_id is not None:
                    device = str((db_session.scalar(select(Run.config).where(Run.id == run_id)) or {})
                                 .get("device", "auto"))
                    if self.launcher.remote or self.settings.trainer_store == "http":
                        token = ingest.issue_token(db_session, run_id)  # its trainer reports over HTTP
            if run_id is None:
                return
            assignment = Assignment(threads=self.threads_per_run, gpu=self._free_gpu(), ingest_token=token,
                                    device=device)
            try:
                handle = self.launcher.launch(run_id, assignment)
            except OSError as exc:
                with session_scope() as db_session:
                    lifecycle.fail(db_session, run_id, f"the trainer could not be started: {exc}")
                continue
            self.active[run_id] = Tracked(handle)
            with session_scope() as db_session:
                lifecycle.launched(db_session, run_id, handle.pid)

    # -- watching ----------------------------------------------------------------------------
    def _watch(self) -> None:
        for run_id, tracked in list(self.active.items()):
            if self.launcher.alive(tracked.handle):
                continue
            del self.active[run_id]
            with session_scope() as db_session:
                run = db_session.get(Run, run_id)
                if run is None or run.status not in ACTIVE_STATUSES:
                    continue  # it reported its end (or was failed) before exiting
                if run.cancel_requested:
                    lifecycle.cancelled(db_session, run_id, "cancelled by the user (stopped after the grace period)")
                elif run.status == STARTING:
                    self._fail(db_session, run, "the trainer could not start: "
                               + self.launcher.exit_reason(tracked.handle))
                else:
                    self._fail(db_session, run, self.launcher.exit_reason(tracked.handle)
                               + ("" if not tracked.handle.adopted else " (adopted after a server restart)"))

    def _fail(self, db_session, run: Run, reason: str) -> bool:
        """Fail a run whose trainer was lost; queue it again from its last checkpoint when its
        settings ask for retries (`retries`) and it has some left."""
        if not lifecycle.fail(db_session, run.id, reason):
            return False
        allowed = int((run.config or {}).get("retries") or 0)
        used = db_session.scalar(select(func.count()).select_from(RunEvent)
                                 .where(RunEvent.run_id == run.id, RunEvent.kind == "retry")) or 0
        if used < allowed and not run.external:
            epoch = latest_checkpoint_epoch(run.id, up_to=run.epoch or 0)
            append_events(db_session, run.id, [("retry", {
                "attempt": used + 1, "of": allowed, "after": reason, "resume_epoch": epoch,
                "message": f"retry {used + 1} of {allowed}, from "
                           + (f"the checkpoint of epoch {epoch}" if epoch else "the start") + f", after: {reason}"})])
            lifecycle.resume(db_session, run.id, epoch)
        return True

    def _enforce_cancels(self) -> None:
        if not self.active:
            return
        with session_scope(write=False) as db_session:
            cancelling = set(db_session.scalars(
                select(Run.id).where(Run.id.in_(list(self.active)), Run.cancel_requested.is_(True))
            ))
        now = time.monotonic()
        for run_id in cancelling:
            tracked = self.active[run_id]
            if tracked.cancel_sent_at is None:
                tracked.cancel_sent_at = now
                self.launcher.signal(tracked.handle, "cancel")
            elif now - tracked.cancel_sent_at > self.settings.cancel_grace_s:
                self.launcher.signal(tracked.handle, "kill")

    def _check_starts(self) -> None:
        """A trainer that has not reported within start_timeout_s could not start: fail and kill it."""
        if not self.active:
            return
        limit = utcnow() - timedelta(seconds=self.settings.start_timeout_s)
        late_runs = select(Run.id).where(Run.id.in_(list(self.active)), Run.status == STARTING, Run.started_at < limit)
        # Read first: this runs every tick, and a write session takes SQLite's write lock, which the
        # trainers' metric writes then queue behind.
        with session_scope(write=False) as db_session:
            if db_session.scalar(late_runs.limit(1)) is None:
                return
        with session_scope() as db_session:
            late = list(db_session.scalars(late_runs))
            for run_id in late:
                if lifecycle.fail(db_session, run_id, f"the trainer did not report within "
                                  f"{self.settings.start_timeout_s:g} s (TRAINBOARD_START_TIMEOUT_S) and was killed"):
                    self.launcher.signal(self.active[run_id].handle, "kill")

    def _reap(self) -> None:
        """Ours alive but silent past hung_timeout_s → failed and killed. Others' (not in our slots)
        whose heartbeat stopped → interrupted, unless their trainer is alive on this host."""
        # A remote trainer's heartbeats are its only sign of life (its node may be gone).
        hung = timedelta(seconds=self.settings.heartbeat_timeout_s if self.launcher.remote
                         else self.settings.hung_timeout_s)
        stale = timedelta(seconds=self.settings.heartbeat_timeout_s)
        with session_scope(write=False) as db_session:
            rows = db_session.execute(select(Run.id, Run.heartbeat_at, Run.status, Run.worker, Run.pid, Run.external)
                                      .where(Run.status.in_(ACTIVE_STATUSES))).all()
        now = utcnow()
        for run_id, heartbeat_at, status, worker, pid, external in rows:
            silent = now - heartbeat_at if heartbeat_at else None
            if external:  # logged by a user's own script: no trainer of ours, only its heartbeats
                if silent is None or silent > stale:
                    with session_scope() as db_session:
                        lifecycle.fail(db_session, run_id, "its script stopped sending heartbeats")
                continue
            if run_id in self.active:
                if status == STARTING:
                    continue  # the start timeout covers it
                if silent is not None and silent > hung:
                    handle = self.active[run_id].handle
                    what = ("Ray worker lost: the trainer sent no heartbeat" if self.launcher.remote
                            else "the trainer stopped responding (no heartbeat")
                    with session_scope() as db_session:
                        run = db_session.get(Run, run_id)
                        if run is not None and self._fail(db_session, run, f"{what} for {silent.total_seconds():.0f} s"
                                                          + (") and was killed" if not self.launcher.remote else "")):
                            self.launcher.signal(handle, "kill")
                            self.active.pop(run_id, None)
                continue
            if silent is not None and silent <= stale:
                continue
            if worker == self.launcher.owner and self.launcher.adopt(RunRef(run_id, pid, worker)) is not None:
                continue  # alive on this host under another scheduler (e.g. a second web process)
            with session_scope() as db_session:
                lifecycle.interrupt(db_session, run_id, "its trainer stopped sending heartbeats")

    # -- after a restart ---------------------------------------------------------------------
    def recover(self) -> None:
        """Adopt this host's live trainers of `starting`/`running` runs; interrupt the rest of ours.
        Runs owned elsewhere are left to the heartbeat reaper."""
        with session_scope(write=False) as db_session:
            rows = db_session.execute(select(Run.id, Run.pid, Run.worker)
                                      .where(Run.status.in_(ACTIVE_STATUSES)).order_by(Run.id)).all()
        for run_id, pid, worker in rows:
            if run_id in self.active or worker != self.launcher.owner:
                continue
            handle = self.launcher.adopt(RunRef(run_id, pid, worker))
            with session_scope() as db_session:
                if handle is not None:
                    self.active[run_id] = Tracked(handle)
                    # Its heartbeats could not land while the server was down: count from now.
                    lifecycle.heartbeat(db_session, run_id)
                    append_events(db_session, run_id, [("log", {
                        "level": "info", "message": f"the server restarted; it adopted this run's trainer "
                                                    f"(pid {pid}, server pid {os.getpid()})"})])
                else:
                    lifecycle.interrupt(db_session, run_id, "its trainer stopped while the server was down")
