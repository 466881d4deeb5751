"""One trainer process: load a run from the database, train it with the engine, write back.

    python -m app.worker RUN_ID      train one run
    python -m app.worker --standby   import torch now, then read the run's order (JSON) from stdin

The local launcher keeps one standby process warm while a slot could use it (torch imported, no
CUDA touched) so a run starts in well under a second; each run still gets a fresh process of its own. SIGTERM asks the run
to stop at its next step. The trainer reaches the server's state only through its run store
(app/runs/store.py): `running` on its first report, then completed, failed or cancelled. The order
picks the store: the database (DbSink) by default, or the ingest API over HTTP (HttpRunStore) when
it carries `"store": "http"` with the server's URL and the run's ingest token.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.core.config import get_settings
from app.core.db import session_scope
from app.datasets.remote import node_cache
from app.runs import service as runs_service
from app.runs.models import CANCELLED, COMPLETED, FAILED, RUNNING
from app.runs.sink import DbSink
from app.runs.store import RunStore, StoreSink


class StopFlag:
    """Set by SIGTERM or by the sink seeing `cancel_requested`; polled by the engine every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


class TeeSink:
    """The engine's events to the run store's sink and to a watcher (the CLI's progress display)."""

    def __init__(self, sink: StoreSink, watch: Callable[[str, dict[str, Any]], None]):
        self.sink, self.watch = sink, watch

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.sink.emit(kind, payload)
        self.watch(kind, payload)


def train_run(run_id: int, store: RunStore | None = None, stop: StopFlag | None = None,
              watch: Callable[[str, dict[str, Any]], None] | None = None) -> int:
    """Train one claimed run to a final status through its run store. Returns the exit code.
    `watch` also sees every engine event (`trainboard run` shows its progress with it).

    With the database store the trainer works in the run's folder on the server's disk. With a
    remote store (HttpRunStore) it shares no disk with the server: it fetches the data set into
    this node's cache and the checkpoint it resumes from, works in a scratch folder, and uploads
    checkpoints and exports through the store (the scratch folder is removed at the end)."""
    from app.datasets import registry as datasets_registry
    from app.engine.loop import train
    from app.engine.types import DivergedError, EngineError, StoppedError, TrainConfig, TrainJob

    stop = stop or StopFlag()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = store or DbSink(run_id)
    remote = getattr(store, "remote", False)  # HttpRunStore: no disk shared with the server
    # starting → running. A run that is no longer starting (cancelled meanwhile, or failed by the
    # start timeout) is not ours to train.
    if not store.report(RUNNING):
        print(f"run {run_id} is no longer waiting for a trainer: nothing to do", flush=True)
        return 0
    order = store.load()
    store_sink = StoreSink(store, on_cancel=stop.set, sync_epochs=order.judged_each_epoch).start()
    sink = store_sink if watch is None else TeeSink(store_sink, watch)
    settings = get_settings()
    result = None
    scratch = None
    try:
        config = TrainConfig.from_dict(order.config)
        loading = time.monotonic()
        if remote:
            scratch_root = node_cache() / "runs"
            scratch_root.mkdir(parents=True, exist_ok=True)
            scratch = directory = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-", dir=scratch_root))
            data_dir = store.fetch_dataset()
        else:
            directory, data_dir = runs_service.run_dir(run_id), settings.data_dir
        data = datasets_registry.load_dataset(order.dataset, data_dir, val_split=config.val_split,
                                              seed=config.seed, download=not remote)
        sink.emit("log", {"level": "info", "message": f"loaded {order.dataset} in {time.monotonic() - loading:.2f} s"})
        resume_from, fork = None, False
        if order.resume_epoch:
            resume_from = runs_service.checkpoint_path(run_id, order.resume_epoch)
        elif order.parent_run_id and order.fork_epoch:
            resume_from, fork = runs_service.checkpoint_path(order.parent_run_id, order.fork_epoch), True
        if resume_from is not None and remote:
            resume_from = store.fetch_checkpoint(directory / "start" / resume_from.name)
        job = TrainJob(spec=order.spec, config=config, checkpoint_dir=directory / "checkpoints",
                       artifacts_dir=directory / "export", resume_from=resume_from, fork=fork,
                       weights_root=(node_cache() if remote else settings.data_dir).resolve(),
                       # A remote trainer's ingest token ends with the run: it uploads every export first.
                       defer_exports=not remote)
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
    pending = result.pending_exports if result is not None and status == COMPLETED else None
    marker = runs_service.exports_marker(run_id) if pending is not None else None
    try:
        store_sink.close()  # sends what is left, checkpoints and exports included
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()  # the run page shows "exporting…" until it is gone
        if store.report(status, reason, result) and pending is not None:
            export_after_completion(store, pending, watch)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def export_after_completion(store: RunStore, pending: Any, watch: Callable[[str, dict[str, Any]], None] | None) -> None:
    """Write the exports the engine left (TorchScript, ONNX) once the run is reported complete, recording
    each as an artifact with its event: the run is `completed` ~1 s sooner and its files follow."""
    class AfterSink:
        def emit(self, kind: str, payload: dict[str, Any]) -> None:
            payload.setdefault("ts", time.time())
            if kind == "artifact":
                store.save_artifact(payload["name"], Path(payload["path"]))
            store.append([(kind, payload)])
            if watch is not None:
                watch(kind, payload)

    try:
        pending.run(AfterSink())
    except Exception:  # the run is complete whatever happens to its exports
        traceback.print_exc()
    try:
        store.load()
    except LookupError:  # the run was deleted while its exports were written: leave no files behind
        shutil.rmtree(runs_service.run_dir(store.run_id), ignore_errors=True)


def standby() -> int:
    """Warm up (import torch and the engine, no CUDA), then train the run named on stdin."""
    import torch

    import app.datasets.registry  # noqa: F401
    import app.engine.export  # noqa: F401
    import app.engine.loop  # noqa: F401

    # The first optimizer constructed imports torch._dynamo (~2.5 s here): pay that now, not in the run.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    # Open the database pool now too (engine, dialect, first connection), unless trainers report over HTTP.
    if get_settings().trainer_store != "http":
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
    return train_run(int(order["run_id"]), store_for(order))


def store_for(order: dict) -> RunStore:
    """The run store the order asks for: the database unless it says `"store": "http"`."""
    run_id = int(order["run_id"])
    if order.get("store") == "http":
        from app.runs.http_store import HttpRunStore  # httpx: only trainers that report over HTTP import it

        return HttpRunStore(order["server_url"], run_id, order["token"], pid=os.getpid())
    return DbSink(run_id)


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
