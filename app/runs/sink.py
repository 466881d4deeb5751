"""DbSink: the run store (app/runs/store.py) that writes the database directly.

Used inside trainer processes on hosts that reach the database. Lifecycle reports go through
app/runs/lifecycle.py (compare-and-set, with their status events); event batches, their progress
fields and the heartbeat go in one transaction. The functions below that persist a report, a batch
or an artifact are the only ones: the ingest API (app/runs/ingest.py) calls them too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.runs import lifecycle
from app.runs.events import append_events
from app.runs.models import RUNNING, Artifact, Evaluation, Run
from app.runs.store import PartlyStored, RunOrder

# Rows per transaction when DbSink stores a batch: at ~100k rows/s into SQLite about 20-50 ms of
# holding the write lock, so a flushed backlog of 200k rows never starves another writer (busy timeout 30 s).
CHUNK_ROWS = 2000


class DbSink:
    """RunStore over the database for one run."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        # Whether the trainer should stop, read in the transaction of the latest batch or heartbeat: the
        # sink asks right after each (4 a second), so that read saves a transaction of its own.
        self._stop_seen: bool | None = None

    def load(self) -> RunOrder:
        with session_scope(write=False) as db_session:
            run = db_session.get(Run, self.run_id)
            if run is None:
                raise LookupError(f"run {self.run_id} does not exist")
            return RunOrder.of(run)

    def report(self, status: str, reason: str | None = None, result: Any = None) -> bool:
        with session_scope() as db_session:
            return report_status(db_session, self.run_id, status, reason, result_fields(result), os.getpid())

    def append(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Store the batch CHUNK_ROWS rows at a time, each chunk in its own short transaction with its
        own seq block (a backlog never holds SQLite's write lock for long). Committed chunks stay: a
        failure after some raises PartlyStored with how many rows are in, so only the rest is sent again."""
        stored, self._stop_seen = 0, None
        try:
            for start in range(0, len(events), CHUNK_ROWS):
                chunk = events[start:start + CHUNK_ROWS]
                with session_scope() as db_session:
                    persist_batch(db_session, self.run_id, chunk)
                    self._stop_seen = lifecycle.should_stop(db_session, self.run_id)
                stored += len(chunk)
        except Exception as exc:
            if stored:
                raise PartlyStored(stored) from exc
            raise

    def heartbeat(self) -> None:
        self._stop_seen = None
        with session_scope() as db_session:
            lifecycle.heartbeat(db_session, self.run_id)
            self._stop_seen = lifecycle.should_stop(db_session, self.run_id)

    def save_artifact(self, name: str, path: Path) -> None:
        with session_scope() as db_session:
            record_artifact(db_session, self.run_id, name, path)

    def save_checkpoint(self, epoch: int, path: Path, pruned: list[int]) -> None:
        pass  # written straight into the run's folder on the server's disk

    def cancel_requested(self) -> bool:
        seen, self._stop_seen = self._stop_seen, None
        if seen is not None:
            return seen
        with session_scope(write=False) as db_session:
            return lifecycle.should_stop(db_session, self.run_id)


# -- persisting what a trainer sends (DbSink and the ingest API) -------------------------------

def result_fields(result: Any) -> dict[str, Any]:
    """The engine's result (or None) as the fields a final report carries."""
    if result is None:
        return {}
    return {"train_time_s": result.train_time_s, "peak_memory_bytes": result.peak_memory_bytes,
            "training_memory_bytes": result.training_memory_bytes}


def report_status(db_session, run_id: int, status: str, reason: str | None, fields: dict[str, Any],
                  pid: int | None) -> bool:
    """A trainer's lifecycle report: `running` (starting → running) or its end (running → completed,
    failed or cancelled, with the result's fields). False when the run is no longer the trainer's."""
    if status == RUNNING:
        return lifecycle.report_running(db_session, run_id, pid)
    values: dict[str, Any] = {}
    if fields.get("train_time_s") is not None:
        values["train_time_s"] = fields["train_time_s"]
    if fields.get("peak_memory_bytes"):
        values["peak_memory_bytes"] = fields["peak_memory_bytes"]
    if fields.get("training_memory_bytes") is not None:
        values["training_memory_bytes"] = fields["training_memory_bytes"]
    return lifecycle.finish(db_session, run_id, status, reason, values)


def persist_batch(db_session, run_id: int, events: list[tuple[str, dict[str, Any]]],
                  first_trainer_seq: int | None = None) -> int | None:
    """Store a batch of events (gap-free seq), the progress fields they carry and a heartbeat, in
    the caller's transaction. `first_trainer_seq` numbers the rows with the trainer's own seqs
    (consecutive from it). Returns the last seq (None when the run does not exist)."""
    run = db_session.get(Run, run_id)
    if run is None:
        return None
    _apply(db_session, run, events)
    last = append_events(db_session, run_id, [_event_row(k, p) for k, p in events], first_trainer_seq)
    if run.sweep_id is not None and any(kind == "epoch" for kind, _ in events):
        from app.sweeps.service import judge_epoch  # a sweep's trial: its pruner judges the epoch just stored

        try:
            judge_epoch(db_session, run)
        except Exception as exc:  # pruning is advice: the metrics are stored whatever the pruner does
            print(f"trainboard: pruning run {run_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    lifecycle.heartbeat(db_session, run_id)
    return last


def record_artifact(db_session, run_id: int, name: str, path: Path) -> bool:
    """Record a file of the run (inside the artifacts dir; anything else is ignored: False)."""
    root = get_settings().artifacts_dir
    path = Path(path).resolve()
    if not path.is_relative_to(root):
        return False  # never record a path outside the artifacts dir
    relative, size = str(path.relative_to(root)), path.stat().st_size if path.exists() else 0
    row = db_session.scalars(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)).first()
    if row is None:
        db_session.add(Artifact(run_id=run_id, name=name, path=relative, bytes=size))
    else:
        row.path, row.bytes = relative, size
    return True


def _apply(db_session, run: Run, batch: list[tuple[str, dict[str, Any]]]) -> None:
    """Progress fields the runs list shows (epoch, best val accuracy, test results, memory)."""
    for kind, payload in batch:
        if kind == "epoch":
            run.epoch = int(payload["epoch"])
            val = payload.get("val_accuracy")
            if val is not None and (run.best_val_accuracy is None or val > run.best_val_accuracy):
                run.best_val_accuracy = float(val)
        elif kind == "evaluation":
            _upsert_evaluation(db_session, run.id, payload)
            if payload.get("split") == "test":
                run.test_accuracy = payload.get("accuracy")
                run.test_loss = payload.get("loss")
        elif kind == "memory":
            if payload.get("peak_bytes") is not None:
                run.peak_memory_bytes = int(payload["peak_bytes"])
            if payload.get("training_bytes") is not None:
                run.training_memory_bytes = int(payload["training_bytes"])


def _event_row(kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Full evaluations live in their own table; the event stream gets the headline."""
    if kind == "evaluation":
        keep = ("split", "epoch", "accuracy", "loss", "top_k", "top_k_accuracy", "ts")
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
