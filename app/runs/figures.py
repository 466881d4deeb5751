"""A run's speed figures, defined once: what the run page, the compare page and `GET /api/compare`
all show. No torch and no web here.

Every figure comes from the run's `epoch` events (one per finished epoch, written by the engine)
and the run's `train_time_s` column:

- **epochs done**: the kept epochs, i.e. the last `epoch` event of each epoch number (a resumed run
  repeats the epochs after its checkpoint; the abandoned attempt's rows are dropped), counting only
  those that carry an `epoch_time`.
- **training time**: the sum of the kept epochs' `epoch_time`, the seconds the training loop took
  (forward, backward, optimizer steps, metric flushes). Not included: loading data, warm-up,
  validation, checkpoints, the test evaluation, exports.
- **training samples**: the samples the kept epochs trained on; an epoch event's `samples_per_sec`
  is that epoch's samples / its `epoch_time`, so the epoch's samples are their product.
- **samples/s** = training samples / training time (not a mean of per-epoch speeds).
- **time per epoch** = training time / epochs done.
- **training time so far** (the compare page's time axis): at each kept epoch, the sum of the
  `epoch_time` of the kept epochs up to and including it; None at an epoch without a time.
- **whole run**: the run's `train_time_s`, the trainer's whole `train()` call (setup, epochs with
  validation and checkpoints, test evaluation, exports) of its last start. Shown beside training
  time, never instead of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.runs.models import Run, RunEvent


@dataclass(frozen=True)
class Figures:
    epochs: int  # epochs done (with a measured time)
    training_time_s: float | None
    training_samples: int | None
    samples_per_sec: float | None
    time_per_epoch_s: float | None
    whole_run_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def kept_epochs(payloads: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last `epoch` payload of each epoch number, in epoch order (payloads given in seq order)."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for payload in payloads:
        epoch = payload.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            by_epoch[epoch] = payload
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _epoch_seconds(payload: dict[str, Any]) -> float | None:
    """An epoch's training seconds, or None where the event has no usable `epoch_time`."""
    seconds = _number(payload.get("epoch_time"))
    return seconds if seconds is not None and seconds > 0 else None


def training_time_so_far(payloads: Iterable[dict[str, Any]]) -> list[float | None]:
    """For each kept epoch (as `kept_epochs` orders them), the training time up to its end: the running sum
    of the kept epochs' `epoch_time`. An epoch without a time gets None and adds nothing, so the last value
    is the run's training time whenever its last epoch has one."""
    total, times = 0.0, []
    for payload in kept_epochs(payloads):
        seconds = _epoch_seconds(payload)
        if seconds is not None:
            total += seconds
        times.append(total if seconds is not None else None)
    return times


def from_epochs(payloads: Iterable[dict[str, Any]], whole_run_s: float | None = None) -> Figures:
    """The figures from a run's `epoch` payloads (in seq order) and its `train_time_s`."""
    timed = []
    for payload in kept_epochs(payloads):
        if (seconds := _epoch_seconds(payload)) is not None:
            timed.append((seconds, _number(payload.get("samples_per_sec"))))
    whole = _number(whole_run_s)
    if not timed:
        return Figures(epochs=0, training_time_s=None, training_samples=None, samples_per_sec=None,
                       time_per_epoch_s=None, whole_run_s=whole)
    training_time = sum(seconds for seconds, _ in timed)
    samples = None
    if all(speed is not None for _, speed in timed):
        samples = sum(round(seconds * speed) for seconds, speed in timed)
    return Figures(epochs=len(timed), training_time_s=training_time, training_samples=samples,
                   samples_per_sec=samples / training_time if samples is not None else None,
                   time_per_epoch_s=training_time / len(timed), whole_run_s=whole)


def epoch_payloads(db_session: Session, run_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Per run, its `epoch` event payloads in seq order: a Core select on the session's connection (no ORM
    result processing) through the (run_id, kind, seq) index, one JSON decode per row."""
    table = RunEvent.__table__.c
    rows = db_session.connection().execute(
        select(table.run_id, table.payload).where(table.run_id.in_(list(run_ids)), table.kind == "epoch")
        .order_by(table.run_id, table.seq)
    )
    by_run: dict[int, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    for run_id, payload in rows:
        if isinstance(payload, dict):
            by_run.setdefault(run_id, []).append(payload)
    return by_run


def for_run(db_session: Session, run: Run) -> Figures:
    """The figures of one run, read from its events and its row."""
    return from_epochs(epoch_payloads(db_session, [run.id])[run.id], run.train_time_s)
