"""Ingest over HTTP: what trainers and users' own scripts send, checked and stored exactly once.

Each run has its own ingest token (a `secrets.token_urlsafe(32)`, shown once, stored as its sha256):
valid for that run only and only while it is starting or running. Event batches carry the trainer's
own numbering (`seq` 1, 2, 3… per run, in emission order). `runs.last_trainer_seq` is the last one
accepted: rows at or below it are duplicates (a batch sent again after a timeout) and are skipped, a
batch that starts past the next expected seq is a gap (SeqGap, 409 with the expected seq), never
filled. The move of `last_trainer_seq` is a compare-and-set in the same transaction as the rows, so
two deliveries of one batch racing each other store it once; the unique index on
`(run_id, trainer_seq)` backs that up. Rows are stored by app/runs/sink.py `persist_batch`, the code
the database store uses, and get the server's own gap-free `seq` (status events interleave).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, DomainError, EngineUnavailable, InvalidInput, NotFound
from app.datasets import registry, store
from app.runs import lifecycle
from app.runs.models import ACTIVE_STATUSES, Run
from app.runs.service import checkpoint_path
from app.runs.sink import persist_batch, record_artifact, report_status
from app.runs.store import RunOrder

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")
# Payload keys the server reads (progress fields, charts): they must be what the readers expect.
_WHOLE = {"epoch": INT32_MAX, "step": INT32_MAX, "epochs": INT32_MAX, "peak_bytes": INT64_MAX,
          "training_bytes": INT64_MAX, "epoch_step": INT32_MAX, "epoch_steps": INT32_MAX}
_NUMBERS = ("ts", "loss", "accuracy", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
            "top_k_accuracy", "lr", "epoch_time", "samples_per_sec", "epoch_progress", "epoch_elapsed",
            "epoch_loss", "epoch_accuracy")


class Unauthenticated(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class SeqGap(Conflict):
    """A batch that starts past the next expected trainer seq: the rows in between are missing."""

    def __init__(self, message: str, expected_seq: int):
        super().__init__(message)
        self.expected_seq = expected_seq


class RetryBatch(Exception):
    """Another delivery moved `last_trainer_seq` first (PostgreSQL): run the batch again."""


# -- bodies --------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class IngestEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=1, le=INT32_MAX, description="the trainer's own number for this event (1, 2, 3… per run)")
    kind: str = Field(pattern=r"^[a-z][a-z_]{0,19}$", description="step, epoch, evaluation, log, memory…")
    payload: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_payload(self) -> IngestEvent:
        if self.kind == "status":
            raise ValueError("status events come from the lifecycle: report a status with POST .../status")
        for key, top in _WHOLE.items():
            value = self.payload.get(key)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top):
                raise ValueError(f"payload.{key} must be a whole number from 0 to {top}")
        for key in _NUMBERS:
            value = self.payload.get(key)
            if value is not None and not _is_number(value):
                raise ValueError(f"payload.{key} must be a finite number or null")
        if self.kind == "epoch" and self.payload.get("epoch") is None:
            raise ValueError("an epoch event needs payload.epoch")
        split = self.payload.get("split")
        if split is not None and split not in ("train", "val", "test"):
            raise ValueError("payload.split must be train, val or test")
        return self


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[IngestEvent] = Field(min_length=1, max_length=10000)

    @model_validator(mode="after")
    def _consecutive(self) -> IngestBatch:
        first = self.events[0].seq
        if any(event.seq != first + i for i, event in enumerate(self.events)):
            raise ValueError("a batch's seqs must be consecutive and ascending (n, n+1, n+2…)")
        return self


class ResultFields(BaseModel):
    train_time_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    peak_memory_bytes: int | None = Field(None, ge=0, le=INT64_MAX)
    training_memory_bytes: int | None = Field(None, ge=0, le=INT64_MAX)


class StatusReport(BaseModel):
    status: Literal["running", "completed", "failed", "cancelled"]
    reason: str | None = Field(None, max_length=4000)
    result: ResultFields | None = None
    pid: int | None = Field(None, ge=1, le=INT32_MAX, description="the trainer's process id (local trainers)")


class ExternalRunCreate(BaseModel):
    """A run logged by a user's own script (trainboard.init)."""

    name: str = Field("", max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(None, max_length=100)
    class_names: list[str] | None = Field(None, max_length=10000)
    epochs: int | None = Field(None, ge=0, le=INT32_MAX)


class Accepted(BaseModel):
    accepted: int = Field(description="rows stored by this request (0 for a batch sent again)")
    last_seq: int = Field(description="the last trainer seq the server holds for this run")
    cancel_requested: bool


class CancelFlag(BaseModel):
    cancel_requested: bool


class ReportAnswer(BaseModel):
    accepted: bool = Field(description="false when the run is no longer this trainer's (cancelled or failed)")
    cancel_requested: bool


class ExternalRunCreated(BaseModel):
    id: int
    token: str = Field(description="the run's ingest token: shown once")
    url: str


# -- tokens --------------------------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db_session: Session, run_id: int) -> str:
    """A new ingest token for the run (any earlier one stops working); returned once, stored hashed."""
    token = secrets.token_urlsafe(32)
    db_session.execute(update(Run).where(Run.id == run_id).values(ingest_token_hash=_digest(token))
                       .execution_options(synchronize_session=False))
    return token


def authorize(db_session: Session, run_id: int, token: str | None) -> Run:
    """The run, when `token` is its ingest token and the run is starting or running."""
    if not token:
        raise Unauthenticated("send the run's ingest token: Authorization: Bearer <token>")
    run = db_session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if not run.ingest_token_hash or not hmac.compare_digest(run.ingest_token_hash, _digest(token)):
        raise Forbidden(f"this token is not the ingest token of run {run_id}")
    if run.status not in ACTIVE_STATUSES:
        raise Forbidden(f"the run has ended (run {run_id} is {run.status}): its ingest token is no longer valid")
    return run


# -- what trainers send --------------------------------------------------------------------------

def ingest_events(db_session: Session, run_id: int, batch: IngestBatch) -> Accepted:
    """Store the batch's new rows once (see the module docstring); raises SeqGap for a gap."""
    last = db_session.scalar(select(Run.last_trainer_seq).where(Run.id == run_id)) or 0
    first = batch.events[0].seq
    if first > last + 1:
        raise SeqGap(f"events {last + 1} to {first - 1} of run {run_id} are missing: send from seq {last + 1}",
                     expected_seq=last + 1)
    fresh = [event for event in batch.events if event.seq > last]
    if fresh:
        moved = db_session.execute(
            update(Run).where(Run.id == run_id, Run.last_trainer_seq == last)
            .values(last_trainer_seq=fresh[-1].seq).execution_options(synchronize_session=False)).rowcount
        if moved != 1:
            raise RetryBatch()
        persist_batch(db_session, run_id, [(e.kind, dict(e.payload)) for e in fresh], first_trainer_seq=fresh[0].seq)
    else:
        lifecycle.heartbeat(db_session, run_id)
    return Accepted(accepted=len(fresh), last_seq=fresh[-1].seq if fresh else last,
                    cancel_requested=lifecycle.should_stop(db_session, run_id))


def heartbeat(db_session: Session, run_id: int) -> CancelFlag:
    lifecycle.heartbeat(db_session, run_id)
    return CancelFlag(cancel_requested=lifecycle.should_stop(db_session, run_id))


def report(db_session: Session, run_id: int, body: StatusReport) -> ReportAnswer:
    """A lifecycle report, with the database store's rules (app/runs/sink.py report_status)."""
    fields = body.result.model_dump() if body.result else {}
    accepted = report_status(db_session, run_id, body.status, body.reason, fields, body.pid)
    return ReportAnswer(accepted=accepted, cancel_requested=lifecycle.should_stop(db_session, run_id))


def order(db_session: Session, run_id: int) -> RunOrder:
    run = db_session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunOrder.of(run)


def artifact_path(run_dir: Path, name: str) -> Path:
    """Where an uploaded artifact is kept: the run's own folder (InvalidInput for a bad name)."""
    if not ARTIFACT_NAME.fullmatch(name):
        raise InvalidInput("an artifact name is 1 to 50 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit", [{"field": "name", "message": "invalid artifact name"}])
    return run_dir / "export" / name


def record_upload(db_session: Session, run_id: int, name: str, path: Path) -> None:
    record_artifact(db_session, run_id, name, path)


def prune_checkpoints(directory: Path, epochs: set[int]) -> None:
    """Delete the run's checkpoints of these epochs (its remote trainer pruned them)."""
    for epoch in epochs:
        (directory / f"epoch-{epoch:04d}.pt").unlink(missing_ok=True)


def resume_checkpoint(run: Run) -> Path:
    """The checkpoint file a run's order starts from: its own (resume) or its parent's (fork)."""
    if run.resume_epoch:
        path = checkpoint_path(run.id, run.resume_epoch)
    elif run.parent_run_id and run.fork_epoch:
        path = checkpoint_path(run.parent_run_id, run.fork_epoch)
    else:
        raise NotFound(f"run {run.id} starts from scratch: it has no checkpoint to resume from")
    if not path.is_file():
        raise NotFound(f"the checkpoint run {run.id} starts from is missing on the server ({path.name})")
    return path


# -- data sets for remote trainers ---------------------------------------------------------------

class DatasetFile(BaseModel):
    name: str
    sha256: str
    bytes: int


class DatasetManifest(BaseModel):
    name: str
    files: list[DatasetFile]


def _served_dataset(run: Run) -> str:
    """The name of the data set a run's trainer may fetch: one the server trains on itself (a
    script's run names its data set freely and is served none)."""
    if run.external or not registry.NAME_RE.match(run.dataset or ""):
        raise NotFound(f"run {run.id} has no data set on the server to fetch")
    return run.dataset


def dataset_manifest(run: Run) -> DatasetManifest:
    """The run's data set as files and their sha256 (materialized on the server first if need be)."""
    name = _served_dataset(run)
    data_dir = get_settings().data_dir
    try:
        registry.ensure_cached(name, data_dir, download=False)  # local copies and generated sets: at once
    except registry.DatasetUnavailable:
        from app.datasets import download

        if name not in download.SOURCES:
            raise
        # Never downloaded in the web process: a process of its own fetches it, and the trainer,
        # which retries a 503 with backoff, asks again.
        download.start(name, data_dir)
        raise EngineUnavailable(f"data set {name} is being downloaded on the server (see /datasets): "
                                "ask again shortly") from None
    return DatasetManifest(name=name, files=[DatasetFile(**f) for f in store.file_digests(data_dir, name)])


def dataset_file(run: Run, file_name: str) -> Path:
    name = _served_dataset(run)
    if file_name not in store.FILE_NAMES:
        raise NotFound(f"a data set has the files {', '.join(store.FILE_NAMES)}, not {file_name!r}")
    data_dir = get_settings().data_dir
    path = store.dataset_dir(data_dir, name) / file_name
    if not store.is_cached(data_dir, name):
        raise NotFound(f"data set {name} is not on the server: ask for its manifest first")
    return path


# -- external runs -------------------------------------------------------------------------------

def create_external(db_session: Session, body: ExternalRunCreate) -> tuple[Run, str]:
    """A run logged by a user's own script: created `running`, with its ingest token (returned once)."""
    config = dict(body.config)
    if body.class_names is not None:
        config["class_names"] = list(body.class_names)
    epochs = body.epochs if body.epochs is not None else config.get("epochs")
    run = Run(name=body.name or "script run", spec={"layers": []}, dataset=body.dataset or "external",
              config=config, epochs_total=epochs if isinstance(epochs, int) and 0 <= epochs <= INT32_MAX else 0)
    lifecycle.start_external(db_session, run)
    token = issue_token(db_session, run.id)
    return run, token
