"""Chart data that stays light: a run's step curves downsampled on the server (MinMaxLTTB, from
`tsdownsample`), its epoch rows whole, and (for the run page's first paint) the latest other events.

The run page draws its charts from one snapshot (`GET /api/runs/{id}/series`) and then follows the
event stream from the snapshot's `last_seq` on, instead of replaying the whole history; zooming into
a range asks for that range again, at full resolution when it holds no more than `points` rows.

Rows are read as plain columns (a step row's loss, accuracy and epoch progress are columns of their
own, beside the JSON payload), never as ORM objects. Like the page (static/js/run.js), a resumed run's abandoned
tail is left out: a row is kept only if no later step or epoch row goes back to a smaller step.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from sqlalchemy import func, select
from tsdownsample import MinMaxLTTBDownsampler

from app.core.db import session_scope
from app.core.errors import NotFound
from app.runs.models import Run, RunEvent

DEFAULT_POINTS = 2000
MAX_POINTS = 10_000
MIN_POINTS = 10
MAX_EVENTS = 1000
X_AXES = ("step", "epoch", "time")
SERIES = ("loss", "accuracy")
# Evaluation events carry confusion matrices; the page's log needs only these fields of them.
CACHE_SIZE = 32  # answers kept per web process, by run and its last seq (a new event makes a new key)
_CACHE_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
EVALUATION_FIELDS = ("split", "epoch", "accuracy", "loss", "top_k", "top_k_accuracy")
# Kinds the latest-events list leaves out: step and epoch rows come above; histograms (large, per epoch)
# have their own answer (app/runs/histograms.py), which the run page's panel reads.
SNAPSHOT_SKIPS = ("step", "epoch", "histograms")


def _survivors(steps: np.ndarray) -> np.ndarray:
    """Rows (in seq order) that no later row abandons: a resumed run repeats the steps after its
    checkpoint, and the page drops the rows at or after a step that comes again."""
    if steps.size == 0:
        return np.zeros(0, dtype=bool)
    later_min = np.empty_like(steps)
    later_min[:-1] = np.minimum.accumulate(steps[::-1])[::-1][1:]
    later_min[-1] = np.inf
    return steps <= later_min


def _last_of_each(values: np.ndarray) -> np.ndarray:
    """True at the last row of each value."""
    last = np.zeros(values.size, dtype=bool)
    if values.size:
        _, first_from_end = np.unique(values[::-1], return_index=True)
        last[values.size - 1 - first_from_end] = True
    return last


def _monotone(values: np.ndarray) -> np.ndarray:
    """Never before the row ahead (uPlot and the downsampler want x in order); a gap takes the
    previous value, and leading gaps the first known one."""
    out = np.fmax.accumulate(values) if values.size else values
    if out.size and np.isnan(out).any():
        first = out[~np.isnan(out)]
        out = np.where(np.isnan(out), first[0] if first.size else 0.0, out)
    return out


def _num(value: float, digits: int | None = None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits) if digits is not None else float(value)


def series(run_id: int, *, x: str = "step", start: float | None = None, end: float | None = None,
           points: int = DEFAULT_POINTS, events: int = 0) -> dict[str, Any]:
    """The run's chart data, as of its `last_seq`.

    `steps`: columns of step rows (step, epoch_at, ts, loss, accuracy) whose x (`step`, `epoch`: the
    fractional epoch, or `time`: seconds since the run's first step or epoch row) lies in
    [start, end]; each of loss and accuracy has at most `points` values there (MinMaxLTTB keeps the
    first and last, the extremes and the shape), the other rows' value is null. All of them when the
    range holds no more than `points`. `epochs`: the epoch rows in that range, whole. With `events`,
    the latest `events` events of other kinds (status, log, evaluation, memory, checkpoint, artifact)
    and the latest step event, whole: what the page's log, progress and stats start from."""
    with session_scope(write=False) as db_session:
        found = db_session.execute(select(Run.last_seq, Run.created_at).where(Run.id == run_id)).first()
        if found is None:
            raise NotFound(f"run {run_id} does not exist")
        last_seq = found[0]
        key = (run_id, found[1], last_seq, x, start, end, points, events)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:  # a finished run's page opened again: nothing changed since
            return cached
        db = db_session.connection()  # Core rows: no ORM objects for 100,000 step rows
        in_run = (RunEvent.run_id == run_id, RunEvent.seq <= last_seq)
        # The metric columns (rows written before migration 0011: their payload's values).
        step_rows = _plain_rows(db, select(
            RunEvent.seq, RunEvent.step, RunEvent.epoch, RunEvent.ts,
            func.coalesce(RunEvent.loss, RunEvent.payload["loss"].as_float()),
            func.coalesce(RunEvent.accuracy, RunEvent.payload["accuracy"].as_float()),
            func.coalesce(RunEvent.progress, RunEvent.payload["epoch_progress"].as_float()),
        ).where(*in_run, RunEvent.kind == "step", RunEvent.step.is_not(None)).order_by(RunEvent.seq))
        epoch_rows = db.execute(
            select(RunEvent.seq, RunEvent.step, RunEvent.ts, RunEvent.payload)
            .where(*in_run, RunEvent.kind == "epoch", RunEvent.step.is_not(None)).order_by(RunEvent.seq)
        ).all()
        recent: list[dict[str, Any]] = []
        if events:
            others = db_session.execute(
                select(RunEvent.seq, RunEvent.kind, RunEvent.payload)
                .where(*in_run, RunEvent.kind.not_in(SNAPSHOT_SKIPS)).order_by(RunEvent.seq.desc()).limit(events)
            ).all()
            recent = [{"seq": seq, "kind": kind, "data": _slim(kind, payload)} for seq, kind, payload in reversed(others)]
            latest = db_session.execute(
                select(RunEvent.seq, RunEvent.payload).where(*in_run, RunEvent.kind == "step")
                .order_by(RunEvent.seq.desc()).limit(1)
            ).first()
            if latest is not None:
                recent.append({"seq": latest[0], "kind": "step", "data": latest[1]})

    columns = np.array(step_rows, dtype=np.float64).reshape(-1, 7)  # None (SQL NULL) becomes NaN
    seq, step, epoch, ts, loss, accuracy, progress = columns.T
    epoch_seq = np.array([r[0] for r in epoch_rows], dtype=np.float64)
    epoch_step = np.array([r[1] for r in epoch_rows], dtype=np.float64)

    # Which rows survive a resume: over the step and epoch rows together, in seq order.
    all_seq = np.concatenate([seq, epoch_seq])
    order = np.argsort(all_seq, kind="stable")
    keep = np.empty(all_seq.size, dtype=bool)
    keep[order] = _survivors(np.concatenate([step, epoch_step])[order])
    keep_steps, keep_epochs = keep[:seq.size], keep[seq.size:]
    keep_steps &= _last_of_each(step)  # a step that comes again (a resume at that very step): the later row
    keep_epochs &= _last_of_each(epoch_step)
    step, epoch, ts, loss, accuracy, progress = (c[keep_steps] for c in (step, epoch, ts, loss, accuracy, progress))
    epoch_rows = [row for row, kept in zip(epoch_rows, keep_epochs, strict=True) if kept]

    first_ts = min([*ts[:1].tolist(), *(row[2] for row in epoch_rows[:1])], default=0.0)
    epoch_at = _monotone(np.where(np.isnan(epoch), np.nan, epoch - 1 + np.nan_to_num(progress)))
    xs = {"step": step, "epoch": epoch_at, "time": _monotone(ts) - first_ts}[x]

    in_range = np.ones(xs.size, dtype=bool)
    if start is not None:
        in_range &= xs >= start
    if end is not None:
        in_range &= xs <= end
    rows = np.flatnonzero(in_range)
    chosen: dict[str, np.ndarray] = {}
    downsampled = False
    for name, values in (("loss", loss), ("accuracy", accuracy)):
        have = rows[np.isfinite(values[rows])]
        if have.size > points:
            x_have = xs[have]
            # The downsampler wants x strictly increasing (it panics otherwise): rows that share an x
            # (a script's steps without an epoch, by epoch) are spaced by their order instead.
            spaced = x_have.size < 2 or bool(np.all(np.diff(x_have) > 0))
            downsampler = MinMaxLTTBDownsampler()
            picks = (downsampler.downsample(x_have, values[have], n_out=points) if spaced
                     else downsampler.downsample(values[have], n_out=points))
            have = have[picks.astype(np.int64)]
            downsampled = True
        chosen[name] = have
    union = np.union1d(chosen["loss"], chosen["accuracy"])
    out: dict[str, list] = {
        "step": [int(v) for v in step[union]],
        "epoch_at": [_num(v, 6) for v in epoch_at[union]],
        "ts": [_num(v, 3) for v in ts[union]],
    }
    for name, values in (("loss", loss), ("accuracy", accuracy)):
        mask = np.isin(union, chosen[name])
        out[name] = [_num(v) if m else None for v, m in zip(values[union], mask, strict=True)]

    epoch_x = {"step": lambda row: row[1], "time": lambda row: row[2] - first_ts,
               "epoch": lambda row: row[3].get("epoch")}[x]
    epochs = [{"seq": row[0], **row[3]} for row in epoch_rows
              if (start is None or (epoch_x(row) is not None and epoch_x(row) >= start))
              and (end is None or (epoch_x(row) is not None and epoch_x(row) <= end))]
    answer: dict[str, Any] = {
        "run_id": run_id, "last_seq": last_seq, "x": x, "from": start, "to": end, "points": points,
        "rows": int(rows.size), "downsampled": downsampled, "first_ts": first_ts if ts.size or epoch_rows else None,
        "steps": out, "epochs": epochs,
    }
    if events:
        answer["events"] = recent
    with _CACHE_LOCK:
        _CACHE[key] = answer
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return answer


def _plain_rows(db, statement) -> list[tuple]:
    """The statement's rows as the driver's own tuples, on the session's connection: no Row objects or
    result processing for 100,000 rows of numbers (a third of the snapshot's time), and numpy reads
    tuples directly (a Row it would probe for array attributes, one failed lookup each). The statement's
    values are integers and constants of our own, so they are compiled in as literals."""
    sql = str(statement.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True}))
    raw = db.connection.dbapi_connection
    # PostgreSQL: numbers in binary (no text to parse per value).
    cursor = raw.cursor(binary=True) if db.dialect.driver == "psycopg" else raw.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _slim(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind == "evaluation":
        return {k: payload[k] for k in EVALUATION_FIELDS if k in payload}
    if kind == "projection":  # its points are served by GET /api/runs/{id}/projection
        return {k: payload[k] for k in ("epoch", "count", "total", "features", "explained_variance") if k in payload}
    return payload
