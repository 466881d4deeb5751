"""DbSink: engine events → database, batched (one transaction per ~0.25 s), with heartbeats.

Runs inside trainer processes. `emit` only appends to a list under a lock, so the training
loop never waits on the database; a background thread writes batches and heartbeats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models_base import utcnow
from app.runs.events import append_events
from app.runs.models import Artifact, Evaluation, Run

FLUSH_INTERVAL_S = 0.25
# Without new events, the heartbeat is written once a second (the reaper allows 10 s).
HEARTBEAT_S = 1.0


class DbSink:
    """Collects events and writes them in batches; also tells the trainer when to stop."""

    def __init__(self, run_id: int, on_cancel: Callable[[], None]):
        self.run_id = run_id
        self._on_cancel = on_cancel
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flushed_once = False
        self._last_beat = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"dbsink-{run_id}", daemon=True)

    def start(self) -> DbSink:
        self._thread.start()
        return self

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        payload.setdefault("ts", time.time())
        with self._lock:
            self._pending.append((kind, payload))
        # The first metric goes out at once: people watch for the run to come alive.
        if not self._flushed_once and kind in ("step", "epoch"):
            self._wake.set()

    def close(self) -> None:
        """Stop the thread and write what is left (called before the final status)."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.flush()
            except Exception as exc:  # keep training; the next flush retries the batch
                print(f"trainboard: metric flush failed, will retry: {exc}", flush=True)

    def flush(self) -> None:
        """One transaction: events, progress fields, heartbeat; reads the cancel flag."""
        with self._lock:
            batch, self._pending = self._pending, []
        now = time.monotonic()
        if not batch and now - self._last_beat < HEARTBEAT_S:
            # Nothing to write yet: only look at the cancel flag, without taking the write lock.
            with session_scope(write=False) as db_session:
                cancel = db_session.scalar(select(Run.cancel_requested).where(Run.id == self.run_id))
            if cancel:
                self._on_cancel()
            return
        self._last_beat = now
        try:
            with session_scope() as db_session:
                run = db_session.get(Run, self.run_id)
                if run is None:
                    return
                self._apply(db_session, run, batch)
                append_events(db_session, self.run_id, [_event_row(k, p) for k, p in batch])
                run.heartbeat_at = utcnow()
                cancel = run.cancel_requested
        except Exception:
            with self._lock:  # put the batch back in front: nothing committed is lost, nothing skipped
                self._pending[:0] = batch
            raise
        if batch:
            self._flushed_once = True
        if cancel:
            self._on_cancel()

    def _apply(self, db_session, run: Run, batch: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, payload in batch:
            if kind == "epoch":
                run.epoch = int(payload["epoch"])
                val = payload.get("val_accuracy")
                if val is not None and (run.best_val_accuracy is None or val > run.best_val_accuracy):
                    run.best_val_accuracy = float(val)
            elif kind == "evaluation":
                _upsert_evaluation(db_session, self.run_id, payload)
                if payload.get("split") == "test":
                    run.test_accuracy = payload.get("accuracy")
                    run.test_loss = payload.get("loss")
            elif kind == "memory":
                if payload.get("peak_bytes") is not None:
                    run.peak_memory_bytes = int(payload["peak_bytes"])
                if payload.get("training_bytes") is not None:
                    run.training_memory_bytes = int(payload["training_bytes"])
            elif kind == "artifact":
                _upsert_artifact(db_session, self.run_id, payload)


def _event_row(kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Full evaluations live in their own table; the event stream gets the headline."""
    if kind == "evaluation":
        keep = ("split", "epoch", "accuracy", "loss", "top_k_accuracy", "ts")
        return kind, {k: payload[k] for k in keep if k in payload}
    return kind, payload


def _upsert_evaluation(db_session, run_id: int, payload: dict[str, Any]) -> None:
    split, epoch = payload.get("split", "val"), int(payload.get("epoch") or 0)
    row = db_session.scalars(
        select(Evaluation).where(Evaluation.run_id == run_id, Evaluation.split == split, Evaluation.epoch == epoch)
    ).first()
    body = {k: v for k, v in payload.items() if k not in ("split", "epoch", "accuracy", "loss", "ts")}
    if row is None:
        db_session.add(Evaluation(run_id=run_id, split=split, epoch=epoch, accuracy=payload.get("accuracy"),
                                  loss=payload.get("loss"), payload=body))
    else:  # a resumed run evaluates its resumed epoch again
        row.accuracy, row.loss, row.payload = payload.get("accuracy"), payload.get("loss"), body


def _upsert_artifact(db_session, run_id: int, payload: dict[str, Any]) -> None:
    root = get_settings().artifacts_dir
    path = Path(payload["path"]).resolve()
    if not path.is_relative_to(root):
        return  # never record a path outside the artifacts dir
    relative = str(path.relative_to(root))
    row = db_session.scalars(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == payload["name"])).first()
    if row is None:
        db_session.add(Artifact(run_id=run_id, name=payload["name"], path=relative, bytes=int(payload.get("bytes", 0))))
    else:
        row.path, row.bytes = relative, int(payload.get("bytes", 0))
