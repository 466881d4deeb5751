"""One trainer process: load a run from the database, train it with the engine, write back.

    python -m app.worker RUN_ID      train one run
    python -m app.worker --standby   import torch now, then read "RUN_ID [GPU]" from stdin

The executor keeps one standby process warm (torch imported, no CUDA touched) so a run starts
in well under a second; each run still gets a fresh process of its own. SIGTERM asks the run
to stop at its next step.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback

from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models_base import utcnow
from app.runs import service as runs_service
from app.runs.events import append_events
from app.runs.models import CANCELLED, COMPLETED, FAILED, RUNNING, Run
from app.runs.sink import DbSink


class StopFlag:
    """Set by SIGTERM or by the sink seeing `cancel_requested`; polled by the engine every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def _load(run_id: int) -> tuple[dict, str, dict, int | None, int | None, int | None]:
    with session_scope() as db_session:
        run = db_session.get(Run, run_id)
        if run is None:
            raise SystemExit(f"run {run_id} does not exist")
        if run.status != RUNNING:
            # Claimed by the executor before we start; anything else means it was cancelled meanwhile.
            raise SystemExit(0)
        run.pid = os.getpid()
        run.heartbeat_at = utcnow()
        append_events(db_session, run_id, [("status", {"status": RUNNING, "pid": os.getpid()})])
        return dict(run.spec), run.dataset, dict(run.config), run.resume_epoch, run.parent_run_id, run.fork_epoch


def _finish(run_id: int, status: str, reason: str | None, result=None) -> None:
    with session_scope() as db_session:
        run = db_session.get(Run, run_id)
        if run is None or run.status != RUNNING:
            return
        run.status = status
        run.failure_reason = reason
        run.finished_at = utcnow()
        run.heartbeat_at = utcnow()
        if result is not None:
            run.train_time_s = result.train_time_s
            if result.peak_memory_bytes:
                run.peak_memory_bytes = result.peak_memory_bytes
            if result.training_memory_bytes is not None:
                run.training_memory_bytes = result.training_memory_bytes
        payload = {"status": status}
        if reason:
            payload["reason"] = reason
        append_events(db_session, run_id, [("status", payload)])


def train_run(run_id: int) -> int:
    """Train one claimed run to a terminal status. Returns the process exit code."""
    from app.datasets import registry as datasets_registry
    from app.engine.loop import train
    from app.engine.types import DivergedError, EngineError, StoppedError, TrainConfig, TrainJob

    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    spec, dataset, config_dict, resume_epoch, parent_id, fork_epoch = _load(run_id)
    sink = DbSink(run_id, on_cancel=stop.set).start()
    settings = get_settings()
    result = None
    try:
        config = TrainConfig.from_dict(config_dict)
        loading = time.monotonic()
        data = datasets_registry.load_dataset(dataset, settings.data_dir, val_split=config.val_split, seed=config.seed)
        sink.emit("log", {"level": "info", "message": f"loaded {dataset} in {time.monotonic() - loading:.2f} s"})
        directory = runs_service.run_dir(run_id)
        resume_from, fork = None, False
        if resume_epoch:
            resume_from = runs_service.checkpoint_path(run_id, resume_epoch)
        elif parent_id and fork_epoch:
            resume_from, fork = runs_service.checkpoint_path(parent_id, fork_epoch), True
        job = TrainJob(spec=spec, config=config, checkpoint_dir=directory / "checkpoints",
                       artifacts_dir=directory / "export", resume_from=resume_from, fork=fork,
                       weights_root=settings.data_dir.resolve())
        result = train(job, data, sink, should_stop=stop)
        status, reason = COMPLETED, None
    except StoppedError:
        status, reason = CANCELLED, "cancelled by the user"
    except DivergedError as exc:
        status, reason = FAILED, str(exc)
    except EngineError as exc:
        status, reason = FAILED, str(exc)
    except Exception as exc:  # the reason is shown to the user; the traceback goes to the log
        traceback.print_exc()
        status, reason = FAILED, f"{type(exc).__name__}: {exc}"
    sink.close()
    _finish(run_id, status, reason, result)
    return 0


def standby() -> int:
    """Warm up (import torch and the engine, no CUDA), then train the run named on stdin."""
    import torch

    import app.datasets.registry  # noqa: F401
    import app.engine.export  # noqa: F401
    import app.engine.loop  # noqa: F401

    # The first optimizer constructed imports torch._dynamo (~2.5 s here): pay that now, not in the run.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    # Open the database pool now too (engine, dialect, first connection).
    with session_scope(write=False) as db_session:
        db_session.execute(text("SELECT 1"))

    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the server went away before handing us a run
    order = json.loads(line)
    if order.get("gpu") is not None:
        # Set before any CUDA call: CUDA reads it when it initializes, not at `import torch`.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(order["gpu"])
    if order.get("threads"):
        import torch

        # Concurrent runs share the cores: more threads than cores per run only adds contention.
        torch.set_num_threads(int(order["threads"]))
    return train_run(int(order["run_id"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker")
    parser.add_argument("run_id", nargs="?", type=int)
    parser.add_argument("--standby", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    code = standby() if args.standby else train_run(args.run_id)
    print(f"trainboard worker done in {time.monotonic() - started:.1f}s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
