"""Local executor: one fresh OS process per run, a persistent queue (the runs table), N slots.

A scheduler thread in the web process:
- claims queued runs in id order while slots are free and hands each to a warm standby
  trainer (spawned with `python -m app.worker --standby`, never forked, in its own process
  group: torch is already imported, CUDA untouched), then warms the next standby;
- watches its trainers: one that exits while its run is still `running` fails the run with
  the reason (killed by signal N / exit code N);
- enforces cancellation: SIGTERM to the process group at once, SIGKILL after the grace period;
- reaps runs whose heartbeat stopped (trainers it does not own, e.g. after a restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from app.core.config import Settings
from app.core.db import session_scope
from app.core.models_base import utcnow
from app.runs.events import append_events
from app.runs.models import CANCELLED, FAILED, QUEUED, RUNNING, Run

ROOT = Path(__file__).resolve().parents[2]
TICK_S = 0.1


@dataclass
class Trainer:
    process: subprocess.Popen
    run_id: int | None = None
    gpu: str | None = None
    term_sent_at: float | None = None
    log_path: Path | None = None
    started: float = field(default_factory=time.monotonic)


def _gpu_ids() -> list[str]:
    """GPU indices without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"the trainer process was killed ({name})"
    return f"the trainer process exited with code {code} before finishing the run"


class LocalExecutor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.host = socket.gethostname()
        self.gpus = _gpu_ids()
        self.active: dict[int, Trainer] = {}
        self.standby: Trainer | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-executor", daemon=True)
        self._last_reap = 0.0
        self.logs_dir = settings.data_dir.resolve() / "logs"
        # Warm standbys run at the lowest CPU priority so their imports do not slow down training
        # runs; the executor restores normal priority when it hands one a run. Only root may lower
        # a nice value again, so other users' standbys keep normal priority throughout.
        self._nice = ["nice", "-n", "19"] if os.geteuid() == 0 else []
        # Split the cores between the slots, keeping one for the web process and the next standby's
        # warm-up: oversubscribed OpenMP threads slow small models down by up to 10x (measured).
        self.threads_per_run = settings.trainer_threads or max(1, ((os.cpu_count() or 1) - 1) // settings.slots)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self.standby is not None:
            self._close_standby()

    def wake(self) -> None:
        self._wake.set()

    # -- the scheduler thread ----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # never let the scheduler die; the next tick retries
                print(f"trainboard executor: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            self._wake.wait(TICK_S)
            self._wake.clear()

    def _tick(self) -> None:
        self._watch_trainers()
        self._enforce_cancels()
        self._start_queued()
        if self.settings.warm_workers and self.standby is None:
            self.standby = self._spawn_standby()
        now = time.monotonic()
        if now - self._last_reap > 1.0:
            self._last_reap = now
            self._reap_stale()

    def _spawn_standby(self) -> Trainer:
        log_path = self.logs_dir / f"standby-{time.time_ns()}.log"
        log = open(log_path, "ab")
        process = subprocess.Popen(
            # Warming up (imports) must not steal CPU from runs that are training: lowest priority
            # until it is handed a run, when the worker raises itself back (see app.worker).
            [*self._nice, sys.executable, "-m", "app.worker", "--standby"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group: cancel signals reach its children too
        )
        log.close()
        return Trainer(process=process, log_path=log_path)

    def _close_standby(self) -> None:
        standby, self.standby = self.standby, None
        if standby and standby.process.poll() is None:
            try:
                standby.process.stdin.close()  # EOF: the standby exits without training
            except OSError:
                pass
            try:
                standby.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                standby.process.kill()

    def _free_gpu(self) -> str | None:
        if not self.gpus:
            return None
        used = {t.gpu for t in self.active.values()}
        return next((g for g in self.gpus if g not in used), self.gpus[0])

    def _start_queued(self) -> None:
        while len(self.active) < self.settings.slots:
            run_id = self._claim_next()
            if run_id is None:
                return
            trainer = self.standby if self.standby and self.standby.process.poll() is None else None
            self.standby = None
            if trainer is None:
                trainer = self._spawn_standby()
            trainer.run_id, trainer.gpu = run_id, self._free_gpu()
            self.active[run_id] = trainer
            with session_scope() as db_session:
                db_session.execute(update(Run).where(Run.id == run_id).values(pid=trainer.process.pid))
            if self._nice:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, trainer.process.pid, 0)
            order = {"run_id": run_id, "gpu": trainer.gpu, "threads": self.threads_per_run}
            line = json.dumps(order) + "\n"
            try:
                trainer.process.stdin.write(line.encode())
                trainer.process.stdin.close()
            except OSError:
                pass  # it died; _watch_trainers fails the run with the reason
            if self.settings.warm_workers and len(self.active) < self.settings.slots:
                self.standby = self._spawn_standby()

    def _claim_next(self) -> int | None:
        """Atomically move the oldest queued run to running (guards against double starts)."""
        with session_scope(write=False) as db_session:  # the common case, nothing queued, stays read-only
            run_id = db_session.scalars(
                select(Run.id).where(Run.status == QUEUED).order_by(Run.id).limit(1)
            ).first()
        if run_id is None:
            return None
        with session_scope() as db_session:
            claimed = db_session.execute(
                update(Run).where(Run.id == run_id, Run.status == QUEUED).values(
                    status=RUNNING, started_at=utcnow(), heartbeat_at=utcnow(), worker=f"local:{self.host}",
                    cancel_requested=False,
                )
            ).rowcount
            return run_id if claimed else None

    def _watch_trainers(self) -> None:
        for run_id, trainer in list(self.active.items()):
            code = trainer.process.poll()
            if code is None:
                continue
            del self.active[run_id]
            with session_scope() as db_session:
                run = db_session.get(Run, run_id)
                if run is not None and run.status == RUNNING:
                    if run.cancel_requested:
                        _mark(db_session, run, CANCELLED, "cancelled by the user (stopped after the grace period)")
                    else:
                        _mark(db_session, run, FAILED, _describe_exit(code) + self._log_tail(trainer))
        if self.standby is not None and self.standby.process.poll() is not None:
            self.standby = None  # it died while warming up; a new one is spawned next tick

    def _log_tail(self, trainer: Trainer) -> str:
        if trainer.log_path is None or not trainer.log_path.exists():
            return ""
        lines = [ln for ln in trainer.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines[-20:] if "Error" in ln or "error" in ln]
        return f": {errors[-1].strip()}" if errors else ""

    def _enforce_cancels(self) -> None:
        if not self.active:
            return
        with session_scope(write=False) as db_session:
            cancelling = set(db_session.scalars(
                select(Run.id).where(Run.id.in_(list(self.active)), Run.cancel_requested.is_(True))
            ))
        now = time.monotonic()
        for run_id in cancelling:
            trainer = self.active[run_id]
            if trainer.term_sent_at is None:
                trainer.term_sent_at = now
                _signal_group(trainer.process.pid, signal.SIGTERM)
            elif now - trainer.term_sent_at > self.settings.cancel_grace_s:
                _signal_group(trainer.process.pid, signal.SIGKILL)

    def _recover(self) -> None:
        """On start: runs left `running` by a previous server whose trainer is gone → failed."""
        with session_scope() as db_session:
            for run in db_session.scalars(select(Run).where(Run.status == RUNNING)):
                if not (run.worker or "").endswith(self.host) or not _pid_alive(run.pid) or self._stale(run):
                    _mark(db_session, run, FAILED, "interrupted: its trainer stopped while the server was down")

    def _stale(self, run: Run) -> bool:
        silent = _silence(run)
        return silent is None or silent > timedelta(seconds=self.settings.heartbeat_timeout_s)

    def _reap_stale(self) -> None:
        """Runs we do not own whose heartbeat stopped (their trainer is gone) → failed; our own
        trainers that are alive but silent past `hung_timeout_s` → failed and killed."""
        hung_limit = timedelta(seconds=self.settings.hung_timeout_s)
        with session_scope() as db_session:
            for run in db_session.scalars(select(Run).where(Run.status == RUNNING)):
                if run.id in self.active:
                    silent = _silence(run)
                    if silent is not None and silent > hung_limit:
                        _mark(db_session, run, FAILED, f"the trainer stopped responding (no heartbeat for "
                              f"{silent.total_seconds():.0f} s) and was killed")
                        _signal_group(self.active[run.id].process.pid, signal.SIGKILL)
                    continue
                if not self._stale(run):
                    continue
                if run.worker == f"local:{self.host}" and _pid_alive(run.pid):
                    continue  # alive but slow (e.g. a long data load); heartbeats resume
                _mark(db_session, run, FAILED, "interrupted: its trainer stopped sending heartbeats")


def _silence(run: Run) -> timedelta | None:
    """How long since the run's last heartbeat (None: it never sent one)."""
    return utcnow() - run.heartbeat_at if run.heartbeat_at else None


def _mark(db_session, run: Run, status: str, reason: str) -> None:
    run.status = status
    run.failure_reason = reason
    run.finished_at = utcnow()
    append_events(db_session, run.id, [("status", {"status": status, "reason": reason})])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
