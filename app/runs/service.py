"""Run use cases: create (validated before queueing), list, cancel, resume, fork, delete.

Keyword-only, session first; raises domain errors. Training itself happens in trainer
processes started by an executor (app/executors), never here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session, selectinload

from app.architectures import presets
from app.architectures import service as architectures_service
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import DomainError, EngineUnavailable, InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.runs import lifecycle
from app.runs.events import step_row
from app.runs.models import (
    RUNNING,
    Artifact,
    Evaluation,
    Run,
    RunEvent,
)
from app.runs.schemas import RunCreate, TrainConfigIn, describe, error_message


def run_dir(run_id: int) -> Path:
    """Everything a run writes (checkpoints, exports) lives here, inside the artifacts dir."""
    return get_settings().artifacts_dir / f"run-{run_id}"


# Present in a run's export folder while its trainer writes the exports left for after completion.
EXPORTS_PENDING = ".exports-pending"
# A marker older than this is left over from a trainer that died while exporting: not pending any more.
EXPORTS_PENDING_MAX_S = 600


def exports_marker(run_id: int) -> Path:
    """The marker file app/worker.py keeps while it writes a completed run's TorchScript and ONNX exports."""
    return run_dir(run_id) / "export" / EXPORTS_PENDING


# The exports a local trainer writes after reporting the run complete (app/engine/export.py DEFERRABLE).
DEFERRED_EXPORTS = ("torchscript", "onnx")


class ExportPending(EngineUnavailable):
    """A deferred export asked for while the trainer is still writing it: 503 with Retry-After."""

    headers = {"Retry-After": "2"}

    def __init__(self, run_id: int, name: str):
        super().__init__(f"run {run_id} is still writing its {name} export (it completed moments ago): "
                         "try again in a few seconds")


def exports_pending(run_id: int) -> bool:
    """True while the trainer of a completed run is still writing its deferred exports."""
    try:
        age = time.time() - exports_marker(run_id).stat().st_mtime
    except OSError:
        return False
    return age < EXPORTS_PENDING_MAX_S


def checkpoint_path(run_id: int, epoch: int) -> Path:
    return run_dir(run_id) / "checkpoints" / f"epoch-{epoch:04d}.pt"


def prepare(*, db_session: Session, run_in: RunCreate) -> tuple[dict[str, Any], str, int, TrainConfigIn]:
    """Validate everything a run needs before it is queued: (spec, dataset, total_params, config).

    The model is the saved architecture, the spec, the preset fitted to the data set, or (none given) the
    data set's default model (`presets.model_for`); the config is the body's over the settings saved with
    the architecture."""
    spec, dataset, saved = None, run_in.dataset, {}
    try:
        if run_in.architecture_id is not None:
            architecture = architectures_service.get(db_session=db_session, architecture_id=run_in.architecture_id)
            spec, saved = dict(architecture.spec), architecture.training
        elif run_in.spec is not None:
            spec = dict(run_in.spec)
        elif run_in.preset is not None:
            preset = presets.get_preset(run_in.preset)  # NotFound for an unknown name
            dataset = dataset or preset.dataset
        if not dataset:
            raise InvalidInput("choose a data set", [{"field": "dataset", "message": "required"}])
        info = datasets_registry.get_dataset_info(dataset, get_settings().data_dir)
    except NotFound as exc:  # in a request body, an unknown name is invalid input, not a missing page
        raise InvalidInput(exc.message, exc.details) from exc
    if not info.available and info.source != "builtin":
        raise InvalidInput(
            f"data set '{dataset}' is not available here: {info.how_to_get}",
            [{"field": "dataset", "message": info.how_to_get}],
        )
    # A built-in that is not here yet (mnist, cifar10…) is downloaded by the trainer; offline, the run
    # fails with the how-to-import message as its reason.
    if spec is None:
        spec = presets.model_for(run_in.preset, info)
    declared = spec.get("input_shape")
    if declared and list(declared) != list(info.input_shape):
        raise InvalidInput(
            f"the architecture expects input {tuple(declared)} but data set '{dataset}' has samples of "
            f"shape {tuple(info.input_shape)}: change the input shape or pick another data set",
            [{"field": "dataset", "message": "input shape does not fit the architecture"}],
        )
    spec["input_shape"] = list(info.input_shape)
    summary = architectures_service.validate(spec=spec)
    outputs = summary.output_shape
    if list(outputs) != [info.num_classes]:
        raise InvalidInput(
            f"the model ends with output shape {tuple(outputs)} but data set '{dataset}' has "
            f"{info.num_classes} classes: make the last layer Dense({info.num_classes})",
            [{"field": "spec", "index": len(spec.get("layers", [])) - 1, "message": "wrong number of outputs"}],
        )
    return spec, dataset, summary.total_params, _config(run_in, saved)


def datasets_for(spec: dict[str, Any]) -> list[datasets_registry.DatasetInfo]:
    """The data sets on this machine that the architecture fits: samples of its input shape, as many
    classes as it has outputs (built-ins first); none for a spec without an input shape or that does
    not validate."""
    shape = spec.get("input_shape")
    try:
        outputs = architectures_service.validate(spec=spec).output_shape if shape else None
    except DomainError:
        return []
    return [info for info in datasets_registry.list_datasets(get_settings().data_dir)
            if info.available and info.input_shape == list(shape or []) and [info.num_classes] == outputs]


def _config(run_in: RunCreate, saved: dict[str, Any]) -> TrainConfigIn:
    """The body's settings over those saved with the architecture: each setting the body gives (a section
    such as `optimizer` as a whole) wins; the saved ones fill in the rest, then the schema's defaults."""
    if not saved:
        return run_in.config
    given = run_in.config.model_dump(mode="json", exclude_unset=True)
    try:
        return TrainConfigIn.model_validate({**saved, **given})
    except ValidationError as exc:  # saved under other limits (TRAINBOARD_MAX_EPOCHS lowered since)
        raise InvalidInput(
            f"the settings saved with architecture {run_in.architecture_id} do not fit: {describe(exc)}; "
            "give those settings in the run's config, or save the architecture with new ones",
            [{"field": ".".join(["config", *map(str, e["loc"])]), "message": error_message(e)} for e in exc.errors()],
        ) from exc


def create(*, db_session: Session, run_in: RunCreate) -> Run:
    """Validate and queue a run (status 'queued'); nothing is queued when validation fails."""
    run = lifecycle.enqueue(db_session, _new_run(db_session, run_in))
    db_session.commit()
    return run


def queue(*, db_session: Session, run_in: RunCreate, fields: dict[str, Any] | None = None) -> Run:
    """Validate and queue a run in the caller's transaction (no commit), with extra row fields (a
    sweep's trial tags, the preset it was fitted from): the caller queues several runs at once."""
    run = _new_run(db_session, run_in)
    for name, value in (fields or {}).items():
        setattr(run, name, value)
    return lifecycle.enqueue(db_session, run)


def create_claimed(*, db_session: Session, run_in: RunCreate, owner: str) -> Run:
    """A run its creator trains itself (`trainboard run` in its own process): validated and recorded
    like `create`, and claimed for `owner` in the same transaction, so no scheduler ever starts it.
    Its trainer reports `running` and its end like any other; a server on the same database shows
    it, can cancel it (the trainer reads the flag) and interrupts it when its heartbeats stop."""
    run = lifecycle.enqueue(db_session, _new_run(db_session, run_in))
    lifecycle.claim(db_session, run.id, owner)
    db_session.commit()
    return run


def _new_run(db_session: Session, run_in: RunCreate) -> Run:
    spec, dataset, total_params, config = prepare(db_session=db_session, run_in=run_in)
    return Run(
        name=run_in.name or _default_name(run_in, dataset),
        architecture_id=run_in.architecture_id,
        preset=run_in.preset,
        spec=spec,
        dataset=dataset,
        config=config.to_engine_dict(),
        epochs_total=config.epochs,
        total_params=total_params,
    )


def _default_name(run_in: RunCreate, dataset: str) -> str:
    model = run_in.preset or (f"architecture {run_in.architecture_id}" if run_in.architecture_id
                              else "custom" if run_in.spec is not None else "default model")
    return f"{model} on {dataset}"


def get(*, db_session: Session, run_id: int) -> Run:
    run = db_session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def list_(
    *,
    db_session: Session,
    status: str | None = None,
    dataset: str | None = None,
    architecture_id: int | None = None,
    archived: bool | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Run], int]:
    """Runs newest first; `archived` True or False keeps only those (None: both)."""
    query = select(Run)
    if archived is not None:
        query = query.where(Run.archived.is_(archived))
    if status:
        query = query.where(Run.status.in_(status.split(",")))
    if dataset:
        query = query.where(Run.dataset == dataset)
    if architecture_id is not None:
        query = query.where(Run.architecture_id == architecture_id)
    total = db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db_session.scalars(query.order_by(Run.id.desc()).offset(offset).limit(limit)
                              .options(selectinload(Run.tags))).all()
    return list(rows), total


def metrics_json(*, db_session: Session, run_id: int, after: int = 0, limit: int = 1000) -> str:
    """Events with seq > after, oldest first, as the JSON array GET /api/runs/{id}/metrics answers (each
    row RunEventPublic's fields in its order). Bulk path: a Core select of the columns through the
    (run_id, seq) index with the payload as the JSON text it is stored as, spliced into the answer:
    no ORM object, no JSON decode or encode of the payload (10,000 rows are ~3 MB). A payload holding a
    non-finite number (NaN is not JSON) is decoded and written with null in its place."""
    get(db_session=db_session, run_id=run_id)
    table = RunEvent.__table__.c  # the session's connection, Core rows: no ORM result processing
    rows = db_session.connection().execute(
        select(table.seq, table.kind, table.epoch, table.step, cast(table.payload, Text), table.ts)
        .where(table.run_id == run_id, table.seq > after).order_by(table.seq).limit(limit)
    ).all()
    kinds: dict[str, str] = {}
    parts = []
    for seq, kind, epoch, step, payload, ts in rows:
        if "NaN" in payload or "Infinity" in payload:
            payload = json.dumps(_finite(json.loads(payload)), separators=(",", ":"))
        quoted = kinds.get(kind) or kinds.setdefault(kind, json.dumps(kind))
        parts.append(f'{{"seq":{seq},"kind":{quoted},"epoch":{"null" if epoch is None else epoch},'
                     f'"step":{"null" if step is None else step},"payload":{payload},"ts":{float(ts)!r}}}')
    return "[" + ",".join(parts) + "]"


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


# The chart data as CSV: one row per step and per epoch event, in the order they were written.
CSV_COLUMNS = ("kind", "epoch", "step", "fractional_epoch", "time_s", "wall_time", "loss", "accuracy",
               "val_loss", "val_accuracy", "lr")
CSV_PAGE_ROWS = 2000
MAX_CSV_ROWS = 1_000_000  # a day of step events at ~4 per second is ~350,000


def metrics_csv(run_id: int) -> Iterator[str]:
    """The run's curves as CSV text, a page of rows at a time (memory stays bounded however long the
    run; each page is read with its own short session, so a slow download holds no database session).

    Step rows carry the training loss and accuracy over the steps since the previous step row; epoch
    rows the epoch's training means, its validation figures and learning rate. `fractional_epoch` is
    the step's place in epochs (1.5: half-way through epoch 2), `time_s` the seconds since the run's
    first step or epoch row, `wall_time` a Unix timestamp. Stops after MAX_CSV_ROWS rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    after, written, first_ts = 0, 0, None
    while written < MAX_CSV_ROWS:
        with session_scope(write=False) as db_session:
            rows = db_session.execute(
                select(RunEvent.seq, RunEvent.kind, RunEvent.payload, RunEvent.ts)
                .where(RunEvent.run_id == run_id, RunEvent.seq > after, RunEvent.kind.in_(("step", "epoch")))
                .order_by(RunEvent.seq).limit(min(CSV_PAGE_ROWS, MAX_CSV_ROWS - written))
            ).all()
        for seq, kind, payload, ts in rows:
            first_ts = ts if first_ts is None else first_ts
            epoch = payload.get("epoch")
            if kind == "step":
                progress = payload.get("epoch_progress")
                fractional = epoch - 1 + progress if epoch is not None and progress is not None else None
                values = (payload.get("loss"), payload.get("accuracy"), None, None, None)
            else:
                fractional = epoch
                values = tuple(payload.get(k) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"))
            writer.writerow((kind, epoch, payload.get("step"), fractional, round(ts - first_ts, 3), ts, *values))
            after = seq
        written += len(rows)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < CSV_PAGE_ROWS:
            return


def latest_step(*, db_session: Session, run: Run) -> dict[str, Any] | None:
    """What the latest step event of a running run says (steps done of the epoch under way, the
    epoch's elapsed time...), or None: the progress bars and ETAs show it before the epoch ends."""
    if run.status != RUNNING:
        return None
    row = step_row(db_session, run.id)
    return dict(row.payload) if row is not None else None


def evaluation(*, db_session: Session, run_id: int, epoch: int | None = None) -> dict[str, Any]:
    """The test evaluation (default) or the validation evaluation of one epoch."""
    get(db_session=db_session, run_id=run_id)
    query = select(Evaluation).where(Evaluation.run_id == run_id)
    if epoch is None:
        row = db_session.scalars(query.where(Evaluation.split == "test").order_by(Evaluation.id.desc())).first()
        missing = f"run {run_id} has no test evaluation yet (it is written when training completes)"
    else:
        row = db_session.scalars(query.where(Evaluation.split == "val", Evaluation.epoch == epoch)).first()
        missing = f"run {run_id} has no validation evaluation for epoch {epoch}"
    if row is None:
        raise NotFound(missing)
    return {**row.payload, **top_k_metric(row.payload), "split": row.split, "epoch": row.epoch,
            "accuracy": row.accuracy, "loss": row.loss, "epochs": validation_epochs(db_session=db_session, run_id=run_id)}


def top_k_metric(payload: dict[str, Any]) -> dict[str, Any]:
    """`top_k` and `top_k_accuracy` of an evaluation, both None unless k is below the number of classes:
    with k >= classes every sample is in its top k (100% whatever the model), which is no metric. The
    engine no longer records it; evaluations stored before it did are answered the same way."""
    k, classes = payload.get("top_k"), len(payload.get("class_names") or payload.get("confusion_matrix") or [])
    if isinstance(k, int) and (not classes or k < classes):
        return {"top_k": k, "top_k_accuracy": payload.get("top_k_accuracy")}
    return {"top_k": None, "top_k_accuracy": None}


def request_cancel(*, db_session: Session, run_id: int) -> Run:
    """Queued runs are cancelled at once; starting and running ones stop at their next step (the
    scheduler enforces a grace period). Cancelling twice, or a finished run, is harmless."""
    get(db_session=db_session, run_id=run_id)
    lifecycle.request_cancel(db_session, run_id)
    db_session.commit()
    return get(db_session=db_session, run_id=run_id)


def latest_checkpoint_epoch(run_id: int, up_to: int | None = None) -> int | None:
    """The last epoch with a checkpoint on disk; with `up_to`, the last one not after it (a resume
    passes the last epoch the run recorded, so it never skips an epoch whose metrics were lost)."""
    directory = run_dir(run_id) / "checkpoints"
    epochs = sorted(int(p.stem[6:]) for p in directory.glob("epoch-*.pt")
                    if p.stem[6:].isdigit()) if directory.exists() else []
    if up_to is not None:
        epochs = [e for e in epochs if e <= up_to]
    return epochs[-1] if epochs else None


def resume(*, db_session: Session, run_id: int) -> Run:
    """Queue a failed, cancelled or interrupted run again; it continues from its last checkpoint."""
    run = get(db_session=db_session, run_id=run_id)
    lifecycle.resume(db_session, run_id, latest_checkpoint_epoch(run_id, up_to=run.epoch or 0))
    db_session.commit()
    return get(db_session=db_session, run_id=run_id)


def fork(*, db_session: Session, run_id: int, epoch: int | None, name: str | None,
         config_changes: dict[str, Any]) -> Run:
    """A new run that starts from a checkpoint of `run_id` with changed settings."""
    parent = get(db_session=db_session, run_id=run_id)
    epoch = epoch or latest_checkpoint_epoch(run_id)
    if epoch is None or not checkpoint_path(run_id, epoch).exists():
        raise InvalidInput(
            f"run {run_id} has no checkpoint" + (f" for epoch {epoch}" if epoch else "")
            + ": fork from an epoch that finished",
            [{"field": "epoch", "message": "no such checkpoint"}],
        )
    merged = _deep_merge(dict(parent.config), config_changes)
    config = TrainConfigIn.model_validate(merged)
    run = Run(
        name=name or f"{parent.name} (fork of #{parent.id} @ epoch {epoch})",
        architecture_id=parent.architecture_id,
        preset=parent.preset,
        spec=dict(parent.spec),
        dataset=parent.dataset,
        config=config.to_engine_dict(),
        epochs_total=config.epochs,
        total_params=parent.total_params,
        parent_run_id=parent.id,
        fork_epoch=epoch,
    )
    lifecycle.enqueue(db_session, run, reason=f"fork of run {parent.id}")
    db_session.commit()
    return run


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def delete(*, db_session: Session, run_id: int) -> int:
    """Delete a finished or queued run with its rows and files (app/runs/manage.py `delete_runs`); a
    starting or running run must be cancelled first. Answers the bytes freed on disk."""
    from app.runs import manage

    get(db_session=db_session, run_id=run_id)
    return manage.delete_runs(db_session=db_session, run_ids=[run_id]).bytes


def list_artifacts(*, db_session: Session, run_id: int) -> list[Artifact]:
    get(db_session=db_session, run_id=run_id)
    return list(db_session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)))


def artifact_file(*, db_session: Session, run_id: int, name: str) -> Path:
    """The file of a named artifact, guaranteed to lie inside the run's own folder.

    Stored paths come from trainers: `..`, absolute paths and symlinks planted in the folder all
    resolve to somewhere else and are refused here, whatever the name in the URL was."""
    row = db_session.scalars(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)).first()
    missing = NotFound(f"run {run_id} has no artifact '{name}'")
    if row is None:
        if name in DEFERRED_EXPORTS and exports_pending(run_id):
            raise ExportPending(run_id, name)
        raise missing
    own_folder = run_dir(run_id).resolve()
    path = (get_settings().artifacts_dir / row.path).resolve()
    if not path.is_relative_to(own_folder) or not path.is_file():
        raise missing
    return path


def validation_epochs(*, db_session: Session, run_id: int) -> list[int]:
    """The epochs that have a validation evaluation (confusion matrix), oldest first."""
    return list(db_session.scalars(
        select(Evaluation.epoch).where(Evaluation.run_id == run_id, Evaluation.split == "val")
        .order_by(Evaluation.epoch)
    ))
