"""Runs, their event rows (metrics, status, logs), evaluations and artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.core.models_base import utcnow

# The lifecycle (app/runs/lifecycle.py owns every change): queued → starting → running →
# completed | failed | cancelled | interrupted | pruned; failed, cancelled and interrupted runs can be
# resumed. `pruned`: a sweep's pruner stopped the trial early (final, like completed).
QUEUED, STARTING, RUNNING = "queued", "starting", "running"
COMPLETED, FAILED, CANCELLED, INTERRUPTED = "completed", "failed", "cancelled", "interrupted"
PRUNED = "pruned"
STATUSES = (QUEUED, STARTING, RUNNING, COMPLETED, FAILED, CANCELLED, INTERRUPTED, PRUNED)
# A trainer is (or should be) working on these.
ACTIVE_STATUSES = (STARTING, RUNNING)
# No trainer works on these; only resume (failed, cancelled, interrupted) leaves them.
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED, INTERRUPTED, PRUNED)


class Run(Base):
    """An immutable snapshot of spec + config, plus its lifecycle state."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    architecture_id: Mapped[int | None] = mapped_column(
        ForeignKey("architectures.id", ondelete="SET NULL"), nullable=True, index=True
    )
    preset: Mapped[str | None] = mapped_column(String(100), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset: Mapped[str] = mapped_column(String(100), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Which process trains it (local executor) or which task (ray executor).
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Progress and headline results, denormalized for the runs list.
    epochs_total: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_params: Mapped[int] = mapped_column(BigInteger, default=0)
    train_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # What training added on top of the process (CPU: peak RSS above the start; CUDA: allocator peak).
    training_memory_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Lineage: a fork points at its parent and the checkpoint epoch it started from.
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    fork_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Resume from this checkpoint epoch on the next start (set by /resume).
    resume_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The last event seq written; new events take seq = last_seq + 1 in the same transaction.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Ingest over HTTP (app/runs/ingest.py): the last trainer seq accepted (batches are taken in
    # order, exactly once), the sha256 of the run's ingest token, and whether the run is logged by
    # a user's own script (created `running`, never scheduled, failed when its heartbeats stop).
    last_trainer_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ingest_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    external: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Who created it (a user id; None when the server has no accounts).
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A sweep's trial (app/sweeps): its sweep, trial number (0, 1, 2… per sweep), the parameters the
    # sampler chose (by their path in the sweep's space) and what its pruner keeps between epochs.
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    sweep_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sweep_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sweep_attrs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Set (with cancel_requested) when the sweep's pruner stops the run: the epoch it was judged at.
    # A run asked to stop this way ends `pruned` instead of `cancelled`.
    pruned_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Run management (app/runs/manage.py): a markdown note, hidden from the dashboard when archived, tags.
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    # Loaded when read (lists load them in one query with selectinload); rows go with the run (CASCADE).
    tags: Mapped[list[Tag]] = relationship(secondary="run_tags", order_by="Tag.name", passive_deletes=True)

    __table_args__ = (Index("uq_runs_sweep_trial", "sweep_id", "sweep_trial", unique=True),)


class Tag(Base):
    """A label runs can carry, with the colour its chips are drawn in."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    colour: Mapped[str] = mapped_column(String(7))


class RunTag(Base):
    """A run carries a tag (deleted with either)."""

    __tablename__ = "run_tags"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)


class Sweep(Base):
    """A search over run settings and architecture variants (app/sweeps): its request as validated,
    and its own status (queued → running → completed | cancelled). Its trials are runs (Run.sweep_id)."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # "search" (a sampler over a space) or "tutorial" (the tutorial's models, one run each).
    kind: Mapped[str] = mapped_column(String(20), default="search")
    dataset: Mapped[str] = mapped_column(String(100))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    sampler: Mapped[str] = mapped_column(String(20))
    pruner: Mapped[str | None] = mapped_column(String(20), nullable=True)
    metric: Mapped[str] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(10))
    trials_total: Mapped[int] = mapped_column(Integer)
    parallelism: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RunEvent(Base):
    """One event of a run (metric step, epoch, status, evaluation summary, log line).

    `seq` is strictly increasing without gaps per run and is the SSE event id.
    """

    __tablename__ = "run_events"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),
        # One run's rows of one kind in seq order (compare's epoch curves, the latest step, the CSV).
        Index("ix_run_events_run_kind_seq", "run_id", "kind", "seq"),
        # Partial: metric rows have neither a feed number nor a trainer seq (migration 0010).
        Index("uq_run_events_run_trainer_seq", "run_id", "trainer_seq", unique=True,
              postgresql_where=text("trainer_seq IS NOT NULL"), sqlite_where=text("trainer_seq IS NOT NULL")),
        Index("ix_run_events_feed_id", "feed_id", unique=True,
              postgresql_where=text("feed_id IS NOT NULL"), sqlite_where=text("feed_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign key (migration 0010): a per-row check on the bulk write path; the seq block's UPDATE of
    # the run row guards the same thing once per batch (app/runs/events.py).
    run_id: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    ts: Mapped[float] = mapped_column(Float)
    # Step rows only: the payload's loss, accuracy and epoch_progress again, for the chart snapshot to read
    # without parsing JSON (migration 0011; NULL in rows written before it: read the payload then).
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Status events only: their place in the all-runs feed (/api/events), numbered in commit order
    # from FeedCounter when the writing transaction commits (app/runs/events.py).
    feed_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Events sent over the ingest API: the trainer's own number (1, 2, 3… per run), stored once.
    trainer_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)


class FeedCounter(Base):
    """One row: the last feed number handed out to a status event.

    Bumped (`UPDATE ... RETURNING`) as the last write of a transaction that adds status events; the
    row lock makes the next writer wait until this one commits, so feed numbers become visible in
    order and a reader following `feed_id > cursor` never passes a number that commits later.
    """

    __tablename__ = "feed_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Evaluation(Base):
    """A full evaluation (confusion matrix, per-class metrics) of one split at one epoch."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("run_id", "split", "epoch", name="uq_evaluations_run_split_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(10))
    epoch: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class Artifact(Base):
    """A file a run produced, stored under the artifacts directory by a relative path."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_artifacts_run_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(String(500))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
