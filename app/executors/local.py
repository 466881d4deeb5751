"""The local launcher: one fresh OS process per run on this host, with a warm standby trainer.

It only starts trainers and answers questions about them (alive? why did it end? is this pid
still our trainer?); the scheduler (app/executors/scheduler.py) decides what runs when and owns
every status change.

- A standby process (`python -m app.worker --standby`, spawned — never forked — in its own
  process group, torch already imported, CUDA untouched) waits for its run on stdin; a claimed
  run is handed to it as one JSON line (`{"run_id", "gpu", "threads"}`, plus `store`, `server_url`
  and the run's ingest `token` when TRAINBOARD_TRAINER_STORE=http) and the next standby is
  warmed once it could be used (a slot free or a run queued: the scheduler's `_standby_wanted`).
  `trainboard serve` spawns the first one before its own imports (`start_early_standby`). Standbys warm up at the lowest CPU priority when the server runs as
  root, and get normal priority back when they are handed a run.
- Each trainer's output goes to `<data_dir>/logs/standby-<ns>.log`; `logs/run-<id>.log` links
  to the log of the run's latest trainer, so a restarted server still finds it.
- After a restart, a run's trainer is adopted only when its pid is alive, not a zombie, and its
  command line is `app.worker` (so a reused pid is never mistaken for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core.config import Settings
from app.executors.base import Assignment, Handle, Resources, RunRef

ROOT = Path(__file__).resolve().parents[2]
# A standby that died while warming up is not respawned sooner than this (e.g. a broken install).
STANDBY_RETRY_S = 2.0


# Warm standbys run at the lowest CPU priority so their imports do not slow down training runs;
# launch() restores normal priority when it hands one a run. Only root may lower a nice value
# again, so other users' standbys keep normal priority throughout.
_NICE = ["nice", "-n", "19"] if os.geteuid() == 0 else []


@dataclass
class LocalHandle(Handle):
    process: subprocess.Popen | None = None  # None for a trainer adopted after a restart
    log_path: Path | None = None


def _spawn_standby(python: str, logs_dir: Path, extra_env: dict[str, str]) -> LocalHandle:
    if shutil.which(python) is None:  # say so here: behind `nice` it would only be an exit code
        raise FileNotFoundError(f"no Python interpreter at {python}")
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"standby-{time.time_ns()}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            # Warming up (imports) must not steal CPU from runs that are training: lowest priority
            # until it is handed a run (see launch).
            [*_NICE, python, "-m", "app.worker", "--standby"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **extra_env},
            start_new_session=True,  # its own process group: signals reach its children too
        )
    return LocalHandle(run_id=0, pid=process.pid, process=process, log_path=log_path)


# -- the first standby, started as `trainboard serve` starts ---------------------------------------
# Its warm-up (~3 s of `import torch` and the first optimizer) then runs beside the server's own
# start (imports, migrations, the app: ~1.4 s) instead of after it, so a run posted as soon as the
# server answers waits ~1.4 s less for its first metric. The launcher takes it over (_take_early).
_early: LocalHandle | None = None


def start_early_standby(settings: Settings) -> None:
    """Spawn the first standby trainer now, for the local executor with warm workers (else nothing)."""
    global _early
    if settings.executor != "local" or not settings.warm_workers or _early is not None:
        return
    try:
        _early = _spawn_standby(sys.executable, settings.data_dir.resolve() / "logs", {})
    except OSError as exc:  # the launcher tries again on its first tick and says why
        print(f"trainboard: cannot start a standby trainer: {exc}", file=sys.stderr, flush=True)


def discard_early_standby() -> None:
    """Stop the early standby when the server does not start after all (EOF: it exits untrained)."""
    global _early
    early, _early = _early, None
    if early is not None and early.process is not None:
        _close_standby(early)


def _take_early(logs_dir: Path, python: str) -> LocalHandle | None:
    global _early
    early = _early
    if early is None or early.log_path is None or early.log_path.parent != logs_dir or python != sys.executable:
        return None
    _early = None
    return early


def _close_standby(standby: LocalHandle) -> None:
    if standby.process.poll() is None:
        with contextlib.suppress(OSError):
            standby.process.stdin.close()  # EOF: the standby exits without training
        try:
            standby.process.wait(timeout=2)
        except subprocess.TimeoutExpired:  # still importing: it reads stdin only once warm
            standby.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                standby.process.wait(timeout=5)


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


def is_trainer(pid: int | None) -> bool:
    """Whether `pid` is a live trainer process (`python -m app.worker`), not a zombie or a reused pid."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: all we can tell is that the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(") ", 1)[1][:1]
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"app.worker" in cmdline


def describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"the trainer process was killed ({name})"
    return f"the trainer process exited with code {code}"


def last_error_line(log_path: Path | None) -> str:
    """The last line that names an error among the log's last 20 lines, else its last line ('' for
    none, or when the trainer only said it was ready)."""
    if log_path is None or not log_path.exists():
        return ""
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines[-20:] if "Error" in ln or "error" in ln]
    if errors:
        return errors[-1]
    return lines[-1] if lines and lines[-1] != "ready" and not lines[-1].startswith("trainboard worker done") else ""


class LocalLauncher:
    remote = False

    def __init__(self, settings: Settings, *, python: str | None = None, env: dict[str, str] | None = None,
                 warm: bool | None = None):
        self.settings = settings
        self.owner = f"local:{socket.gethostname()}"
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.warm = settings.warm_workers if warm is None else warm
        self.logs_dir = settings.data_dir.resolve() / "logs"
        self.gpus = tuple(_gpu_ids())
        # The standby `trainboard serve` started before anything else, when it was started for this
        # data dir, interpreter and environment (its imports overlapped the server's own start).
        self.standby: LocalHandle | None = (_take_early(self.logs_dir, self.python)
                                            if self.warm and not self.extra_env else None)
        self._standby_retry_at = 0.0
        self._nice = _NICE

    # -- what it offers ----------------------------------------------------------------------
    def resources(self) -> Resources:
        return Resources(cpu_threads=os.cpu_count() or 1, gpus=self.gpus)

    # -- the warm standby --------------------------------------------------------------------
    def prepare(self, wanted: bool = True) -> None:
        if not self.warm:
            return
        now = time.monotonic()
        if self.standby is not None and self.standby.process.poll() is not None:
            self.standby = None  # it died while warming up; its log says why
            self._standby_retry_at = now + STANDBY_RETRY_S
        if self.standby is None and wanted and now >= self._standby_retry_at:
            try:
                self.standby = self._spawn()
            except OSError as exc:
                print(f"trainboard: cannot start a standby trainer: {exc}", file=sys.stderr, flush=True)
                self._standby_retry_at = now + STANDBY_RETRY_S

    def _spawn(self) -> LocalHandle:
        return _spawn_standby(self.python, self.logs_dir, self.extra_env)

    def close(self) -> None:
        standby, self.standby = self.standby, None
        if standby:
            _close_standby(standby)

    # -- trainers ----------------------------------------------------------------------------
    def launch(self, run_id: int, assignment: Assignment) -> LocalHandle:
        handle = self.standby if self.standby and self.standby.process.poll() is None else None
        self.standby = None
        if handle is None:
            handle = self._spawn()
        handle.run_id, handle.gpu = run_id, assignment.gpu
        run_log = self.logs_dir / f"run-{run_id}.log"
        with contextlib.suppress(OSError):
            run_log.unlink(missing_ok=True)
            run_log.symlink_to(handle.log_path.name)
        if self._nice:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, handle.pid, 0)
        order = {"run_id": run_id, "gpu": assignment.gpu, "threads": assignment.threads}
        if assignment.ingest_token:  # TRAINBOARD_TRAINER_STORE=http: the trainer reports over HTTP
            order.update(store="http", server_url=self.settings.ingest_url, token=assignment.ingest_token)
        try:
            handle.process.stdin.write((json.dumps(order) + "\n").encode())
            handle.process.stdin.close()
        except OSError:
            pass  # it died; the scheduler sees it is not alive and fails the run with exit_reason
        return handle

    def alive(self, handle: Handle) -> bool:
        process = getattr(handle, "process", None)
        if process is not None:
            return process.poll() is None
        return is_trainer(handle.pid)

    def signal(self, handle: Handle, what: Literal["cancel", "kill"]) -> None:
        if getattr(handle, "process", None) is None and not is_trainer(handle.pid):
            return  # an adopted trainer that is gone: its pid may belong to someone else by now
        sig = signal.SIGTERM if what == "cancel" else signal.SIGKILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, sig)

    def exit_reason(self, handle: Handle) -> str:
        process = getattr(handle, "process", None)
        log_path = getattr(handle, "log_path", None)
        if process is not None and process.poll() is not None:
            reason = describe_exit(process.returncode)
        else:  # adopted after a restart: not our child, its exit code went to someone else
            reason = "the trainer process ended"
        error = last_error_line(log_path)
        return f"{reason}: {error}" if error else reason

    def adopt(self, run: RunRef) -> LocalHandle | None:
        if run.worker != self.owner or not is_trainer(run.pid):
            return None
        return LocalHandle(run_id=run.id, pid=run.pid, adopted=True, log_path=self.logs_dir / f"run-{run.id}.log")
