"""DbSink: the run store (app/runs/store.py) that writes the database directly.

Used inside trainer processes on hosts that reach the database. Lifecycle reports go through
app/runs/lifecycle.py (compare-and-set, with their status events); event batches, their progress
fields and the heartbeat go in one transaction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.runs import lifecycle
from app.runs.events import append_events
from app.runs.models import RUNNING, Artifact, Evaluation, Run
from app.runs.store import RunOrder


class DbSink:
    """RunStore over the database for one run."""

    def __init__(self, run_id: int):
        self.run_id = run_id

    def load(self) -> RunOrder:
        with session_scope(write=False) as db_session:
            run = db_session.get(Run, self.run_id)
            if run is None:
                raise LookupError(f"run {self.run_id} does not exist")
            return RunOrder(run_id=run.id, spec=dict(run.spec), dataset=run.dataset, config=dict(run.config),
                            resume_epoch=run.resume_epoch, parent_run_id=run.parent_run_id,
                            fork_epoch=run.fork_epoch)

    def report(self, status: str, reason: str | None = None, result: Any = None) -> bool:
        with session_scope() as db_session:
            if status == RUNNING:
                return lifecycle.report_running(db_session, self.run_id, os.getpid())
            values: dict[str, Any] = {}
            if result is not None:
                values["train_time_s"] = result.train_time_s
                if result.peak_memory_bytes:
                    values["peak_memory_bytes"] = result.peak_memory_bytes
                if result.training_memory_bytes is not None:
                    values["training_memory_bytes"] = result.training_memory_bytes
            return lifecycle.finish(db_session, self.run_id, status, reason, values)

    def append(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        with session_scope() as db_session:
            run = db_session.get(Run, self.run_id)
            if run is None:
                return
            _apply(db_session, run, events)
            append_events(db_session, self.run_id, [_event_row(k, p) for k, p in events])
            lifecycle.heartbeat(db_session, self.run_id)

    def heartbeat(self) -> None:
        with session_scope() as db_session:
            lifecycle.heartbeat(db_session, self.run_id)

    def save_artifact(self, name: str, path: Path) -> None:
        root = get_settings().artifacts_dir
        path = Path(path).resolve()
        if not path.is_relative_to(root):
            return  # never record a path outside the artifacts dir
        relative, size = str(path.relative_to(root)), path.stat().st_size if path.exists() else 0
        with session_scope() as db_session:
            row = db_session.scalars(
                select(Artifact).where(Artifact.run_id == self.run_id, Artifact.name == name)).first()
            if row is None:
                db_session.add(Artifact(run_id=self.run_id, name=name, path=relative, bytes=size))
            else:
                row.path, row.bytes = relative, size

    def cancel_requested(self) -> bool:
        with session_scope(write=False) as db_session:
            return lifecycle.should_stop(db_session, self.run_id)


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
