"""The run store: everything a trainer reads from or writes to the server's state, in one interface.

A trainer (app/worker.py) talks to the server's state only through a `RunStore`. Today's one
implementation writes the database directly (app/runs/sink.py `DbSink`); a remote trainer can
use one over HTTP instead. `StoreSink` is the engine's sink on top of any store: `emit` only
appends to a list under a lock, so the training loop never waits on the store; a background
thread sends batches (one `append` per ~0.25 s), heartbeats and reads the cancel flag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FLUSH_INTERVAL_S = 0.25
# Without new events, a heartbeat is sent once a second (the reaper allows heartbeat_timeout_s).
HEARTBEAT_S = 1.0


@dataclass(frozen=True)
class RunOrder:
    """What a trainer needs to train a run: the snapshot taken when it was queued."""

    run_id: int
    spec: dict[str, Any]
    dataset: str
    config: dict[str, Any]
    resume_epoch: int | None
    parent_run_id: int | None
    fork_epoch: int | None
    # The last event seq the server holds from this run's trainers: a new trainer (a resume, a
    # retry) numbers its events from the next one, so the ingest API stores them, gap-free.
    trainer_seq: int = 0
    # A sweep's trial: each epoch's row is sent before the next epoch starts, and the answer (its
    # pruner may have stopped it) is read then, as Optuna's report/should_prune would.
    judged_each_epoch: bool = False

    @classmethod
    def of(cls, run: Any) -> RunOrder:
        """The order of a run row (anything with the Run model's attributes)."""
        return cls(run_id=run.id, spec=dict(run.spec), dataset=run.dataset, config=dict(run.config),
                   resume_epoch=run.resume_epoch, parent_run_id=run.parent_run_id, fork_epoch=run.fork_epoch,
                   trainer_seq=run.last_trainer_seq or 0,
                   judged_each_epoch=getattr(run, "sweep_id", None) is not None)


class PartlyStored(Exception):
    """`append` stored the first `stored` events of the batch (committed) and then failed: only the
    rest may be sent again, or those rows would be stored twice."""

    def __init__(self, stored: int):
        super().__init__(f"the first {stored} events were stored, the rest were not")
        self.stored = stored


class RunStore(Protocol):
    """The server's state of one run, as its trainer sees it."""

    run_id: int

    def load(self) -> RunOrder:
        """The run's spec and settings."""

    def report(self, status: str, reason: str | None = None, result: Any = None) -> bool:
        """A lifecycle report: `running` first (starting → running), then completed, failed or
        cancelled with the reason and the engine's result. False when the server no longer
        counts this trainer as the run's (cancelled or failed meanwhile): it must stop."""

    def append(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Add events (gap-free seq) and the progress they carry; counts as a heartbeat. A store that
        commits a batch in parts raises PartlyStored when it fails after the first part."""

    def heartbeat(self) -> None:
        """The trainer is alive (sent when there is nothing to append)."""

    def save_artifact(self, name: str, path: Path) -> None:
        """Record a file the run produced (inside the artifacts directory)."""

    def save_checkpoint(self, epoch: int, path: Path, pruned: list[int]) -> None:
        """The checkpoint of `epoch` was written at `path`, and the engine deleted those of the
        `pruned` epochs. A store whose trainer writes the server's own disk has nothing to do."""

    def cancel_requested(self) -> bool:
        """True when the trainer should stop: cancelled, or the run is no longer its own."""


class StoreSink:
    """The engine's sink over a RunStore: batched, with heartbeats; tells the trainer when to stop."""

    def __init__(self, store: RunStore, on_cancel: Callable[[], None], *, sync_epochs: bool = False):
        self.store = store
        self._on_cancel = on_cancel
        self._sync_epochs = sync_epochs
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: batches go out in emission order
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flushed_once = False
        self._last_beat = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"store-sink-{store.run_id}", daemon=True)

    def start(self) -> StoreSink:
        self._thread.start()
        return self

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        payload.setdefault("ts", time.time())
        with self._lock:
            self._pending.append((kind, payload))
        # The first metric goes out at once: people watch for the run to come alive. An epoch's row
        # too: a sweep's pruner judges it, and a pruned trial should stop before the next epoch runs far.
        if kind == "epoch" and self._sync_epochs:
            try:
                self.flush()  # from the training thread: the next epoch starts after the verdict
            except Exception as exc:  # the sink's thread retries the batch
                print(f"trainboard: epoch flush failed, will retry: {exc}", flush=True)
        elif kind == "epoch" or (not self._flushed_once and kind == "step"):
            self._wake.set()

    def close(self) -> None:
        """Stop the thread and send what is left (called before the final report)."""
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

    def _save_checkpoint(self, payload: dict[str, Any]) -> None:
        try:
            self.store.save_checkpoint(int(payload["epoch"]), Path(payload["path"]),
                                       [int(e) for e in payload.get("pruned", [])])
        except FileNotFoundError:
            pass  # pruned by the engine before it could be sent: nothing to keep

    def flush(self) -> None:
        """Send pending events (or a heartbeat when due), then look at the cancel flag."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        now = time.monotonic()
        if batch or now - self._last_beat >= HEARTBEAT_S:
            try:
                for kind, payload in batch:
                    if kind == "artifact":
                        self.store.save_artifact(payload["name"], Path(payload["path"]))
                    elif kind == "checkpoint":
                        self._save_checkpoint(payload)
                if batch:
                    self.store.append(batch)
                else:
                    self.store.heartbeat()
            except PartlyStored as exc:
                with self._lock:  # what was stored stays stored; the rest goes back in front
                    self._pending[:0] = batch[exc.stored:]
                raise
            except Exception:
                with self._lock:  # put the batch back in front: nothing sent is lost, nothing skipped
                    self._pending[:0] = batch
                raise
            self._last_beat = now
            if batch:
                self._flushed_once = True
        if self.store.cancel_requested():
            self._on_cancel()
