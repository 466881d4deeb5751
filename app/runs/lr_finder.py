"""Learning-rate finder jobs: a short range test (app/engine/lr_finder.py) in a process of its own.

    POST /api/lr-finder (a run body)  →  start(): validated like a run, a job id, 202
    GET  /api/lr-finder/{id}          →  get(): status, the points so far, the suggestion

Torch never enters the web process and no request waits on training: each job is a child process
(`python -m app.runs.lr_finder`) that gets its order as one JSON line on stdin (spec, config, data
set, data dir) and answers JSON lines on stdout: one `{"point": ...}` per step, then `{"done": ...}`
or `{"error": ...}`. A reader thread per job keeps what it says in memory here.

Bounded: at most MAX_RUNNING jobs at a time (another is refused with 429), MAX_JOBS kept (the oldest
finished ones are forgotten), every job killed at DEADLINE_S, at most MAX_STEPS points each.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import DomainError, EngineUnavailable, InvalidInput, NotFound
from app.runs import service as runs_service
from app.runs.schemas import RunCreate

ROOT = Path(__file__).resolve().parents[2]
MAX_RUNNING = 2
MAX_JOBS = 32
DEADLINE_S = 120.0
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 20, 300, 200  # as app/engine/lr_finder.py (torch-free copy)
JOB_ID_LENGTH = 32


class LrFinderCreate(RunCreate):
    """A run body (what the search tries: model, data set, optimizer, batch size...) and how many steps."""

    steps: int = Field(default=DEFAULT_STEPS, ge=MIN_STEPS, le=MAX_STEPS, description=(
        "batches the learning rate takes to grow from 1e-7 to 10 (the search stops sooner when the loss explodes)"))


class Busy(DomainError):
    """Too many searches are running: try again when one ends."""

    status_code = 429


@dataclass
class Job:
    id: str
    dataset: str
    batch_size: int
    optimizer: str
    steps: int
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | done | failed (not `status`: that name is a run's, which only the lifecycle writes)
    points: list[dict[str, float]] = field(default_factory=list)
    suggestion: float | None = None
    stopped: str | None = None
    error: str | None = None
    seconds: float | None = None
    process: subprocess.Popen | None = None

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.state, "dataset": self.dataset, "batch_size": self.batch_size,
                "optimizer": self.optimizer, "steps": self.steps, "points": list(self.points),
                "suggestion": self.suggestion, "stopped": self.stopped, "error": self.error,
                "seconds": self.seconds, "elapsed": round(time.time() - self.started, 2)}


_lock = threading.Lock()
_jobs: dict[str, Job] = {}


def start(*, db_session: Session, run_in: RunCreate, steps: int = DEFAULT_STEPS) -> dict[str, Any]:
    """Validate the run body as a run would be (model, data set, settings) and start its range test."""
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise InvalidInput(f"steps must be between {MIN_STEPS} and {MAX_STEPS}",
                           [{"field": "steps", "message": f"between {MIN_STEPS} and {MAX_STEPS}"}])
    spec, dataset, _, config = runs_service.prepare(db_session=db_session, run_in=run_in)
    db_session.commit()  # nothing to write: end the transaction before a process starts
    engine_config = config.to_engine_dict()
    order = {"spec": spec, "dataset": dataset, "config": engine_config, "steps": steps,
             "data_dir": str(get_settings().data_dir.resolve())}
    with _lock:
        running = [job for job in _jobs.values() if job.state == "running"]
        if len(running) >= MAX_RUNNING:
            raise Busy(f"{len(running)} learning-rate searches are running already: try again when one ends "
                       "(each takes seconds to a minute)")
        job = Job(id=secrets.token_hex(JOB_ID_LENGTH // 2), dataset=dataset, steps=steps,
                  batch_size=int(engine_config["batch_size"]),
                  optimizer=str(engine_config["optimizer"].get("name", "adam")))
        _forget_old()
        _jobs[job.id] = job
    try:
        job.process = subprocess.Popen(
            [sys.executable, "-m", "app.runs.lr_finder"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:  # out of processes or memory: the slot is free again, and the answer says why
        with _lock:
            job.state, job.error = "failed", f"the search process could not start: {exc}"
        raise EngineUnavailable(f"the learning-rate search could not start a process ({exc}): try again later") from exc
    threading.Thread(target=_follow, args=(job, json.dumps(order)), daemon=True, name=f"lr-finder-{job.id[:8]}").start()
    return job.view()


def get(job_id: str) -> dict[str, Any]:
    with _lock:
        job = _jobs.get(job_id)
        if job is None:
            raise NotFound(f"no learning-rate search {job_id!r} here (searches are kept in memory, the last "
                           f"{MAX_JOBS}, until the server restarts): start a new one")
        return job.view()


def _forget_old() -> None:
    """Keep at most MAX_JOBS - 1 jobs before adding one: the oldest finished ones go first."""
    finished = sorted((job for job in _jobs.values() if job.state != "running"), key=lambda job: job.started)
    while len(_jobs) >= MAX_JOBS and finished:
        _jobs.pop(finished.pop(0).id, None)


def _follow(job: Job, order: str) -> None:
    """Feed the order, read the answers until the process ends or its deadline kills it."""
    process = job.process
    assert process is not None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill(process)

    timer = threading.Timer(DEADLINE_S, expire)
    timer.daemon = True
    timer.start()
    stderr: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr.append(process.stderr.read()[-4000:]), daemon=True)
    drain.start()
    try:
        with contextlib.suppress(OSError, ValueError):
            process.stdin.write(order.encode() + b"\n")
            process.stdin.close()
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with _lock:
                if "point" in message and len(job.points) < MAX_STEPS:
                    job.points.append(message["point"])
                elif "done" in message:
                    done = message["done"]
                    job.points = list(done["points"])[:MAX_STEPS]
                    job.suggestion, job.stopped, job.seconds = done["suggestion"], done["stopped"], done["seconds"]
                    job.state = "done"
                elif "error" in message:
                    job.error, job.state = str(message["error"])[:500], "failed"
    finally:
        timer.cancel()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        _kill(process)
        drain.join(timeout=5)
        with _lock:
            if job.state == "running":
                job.state = "failed"
                if expired.is_set():
                    job.error = f"the search did not end within {DEADLINE_S:g} s and was stopped: try fewer steps or a smaller batch"
                else:
                    lines = [ln for ln in b"".join(stderr).decode(errors="replace").splitlines() if ln.strip()]
                    job.error = "the search process ended without an answer" + (f": {lines[-1][:300]}" if lines else "")
            job.process = None


def stop_all() -> None:
    """At server shutdown: stop every search's process (their jobs live in this process's memory)."""
    with _lock:
        processes = [job.process for job in _jobs.values() if job.process is not None]
    for process in processes:
        _kill(process)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


# ---------- the child process ----------

def main() -> int:
    """Read the order on stdin, run the range test, answer JSON lines on stdout."""
    import torch

    from app.datasets import registry
    from app.engine.lr_finder import range_test
    from app.engine.types import EngineError, TrainConfig

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    order = json.loads(sys.stdin.readline())

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        config = TrainConfig.from_dict(order["config"])
        data = registry.load_dataset(order["dataset"], Path(order["data_dir"]), val_split=config.val_split,
                                     seed=config.seed, download=False)
        result = range_test(order["spec"], config, data, steps=int(order["steps"]),
                            on_point=lambda point: say({"point": {k: _round(v) for k, v in point.items()}}))
    except (EngineError, DomainError, ValueError) as exc:
        say({"error": getattr(exc, "message", None) or str(exc)})
        return 0
    except Exception as exc:  # noqa: BLE001 - the reason is shown to the person who asked
        say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    result["points"] = [{k: _round(v) for k, v in point.items()} for point in result["points"]]
    say({"done": result})
    return 0


def _round(value: float) -> float:
    return float(f"{value:.5g}")


if __name__ == "__main__":
    sys.exit(main())
