"""Runs: launch, inspect, stream metrics, cancel/resume/fork, delete, artifacts, predict."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from app.api.errors import ERROR_RESPONSES
from app.architectures import codegen
from app.core.deps import (
    ArchitectureIdQuery,
    EpochQuery,
    OffsetQuery,
    OptionalSeqQuery,
    RunId,
    SeqQuery,
    SessionDep,
)
from app.core.errors import InvalidInput, NotFound
from app.runs import manage, search
from app.runs import precision as run_precision
from app.runs import service as runs_service
from app.runs.schemas import (
    BulkArchive,
    BulkDelete,
    BulkTags,
    DeleteResult,
    ForkRequest,
    PrecisionPublic,
    RunCreate,
    RunDetail,
    RunEventPublic,
    RunPublic,
    RunsPublic,
    RunUpdate,
    TagInfo,
    TagPublic,
    TagsUpdate,
    TagUpdate,
)
from app.runs.stream import resume_cursor, run_exists

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)


def _wake(request: Request) -> None:
    executor = getattr(request.app.state, "executor", None)
    if executor is not None:
        executor.wake()


@router.post("/api/runs", response_model=RunPublic, status_code=201)
def create_run(request: Request, db_session: SessionDep, body: RunCreate) -> Any:
    """Validate and queue a run; 422 (and nothing queued) when anything does not fit."""
    run = runs_service.create(db_session=db_session, run_in=body)
    _wake(request)
    return run


@router.get("/api/runs", response_model=RunsPublic)
def list_runs(
    db_session: SessionDep,
    status: str | None = None,
    dataset: str | None = None,
    architecture_id: ArchitectureIdQuery = None,
    archived: Literal["true", "false", "all"] = Query("false", description="archived runs are left out unless asked for"),
    offset: OffsetQuery = 0,
    limit: int = Query(50, ge=1, le=500),
    q: str = Query("", max_length=search.MAX_QUERY_CHARS, description=(
        "search: name words, status:, dataset:, arch:, sweep:, preset:, created>DATE, val_accuracy>0.97…")),
    sort: str = Query("created", description=f"one of {', '.join(search.SORTS)}"),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    cursor: str = Query("", max_length=400, description="next_cursor of the previous page (keyset paging)"),
) -> RunsPublic:
    """Runs newest first (or by `sort`), filtered by `q` and the fields; pages by `cursor` (or `offset`)."""
    archived_only = None if archived == "all" else archived == "true"
    if offset and not (q or cursor or sort != "created" or order != "desc"):
        rows, total = runs_service.list_(db_session=db_session, status=status, dataset=dataset,
                                         architecture_id=architecture_id, offset=offset, limit=limit,
                                         archived=archived_only)
        return RunsPublic(items=[RunPublic.model_validate(r) for r in rows], total=total, offset=offset, limit=limit)
    query = search.parse(q)
    query.statuses += [s for s in (status or "").split(",") if s]
    query.datasets += [dataset] if dataset else []
    query.architecture_ids += [architecture_id] if architecture_id is not None else []
    if not query.archived_given:
        query.archived = archived_only
    rows, next_cursor, total = search.page(db_session=db_session, query=query, sort=sort, descending=order == "desc",
                                           cursor=cursor or None, limit=limit)
    return RunsPublic(items=[RunPublic.model_validate(r) for r in rows], total=total, offset=0, limit=limit,
                      next_cursor=next_cursor)


@router.get("/api/runs/{run_id}", response_model=RunDetail)
def get_run(db_session: SessionDep, run_id: RunId) -> Any:
    run = RunDetail.model_validate(runs_service.get(db_session=db_session, run_id=run_id))
    chosen = run_precision.recorded_precision(db_session, run_id)
    run.precision = PrecisionPublic.model_validate(chosen) if chosen else None
    return run


@router.patch("/api/runs/{run_id}", response_model=RunPublic)
def update_run(db_session: SessionDep, run_id: RunId, body: RunUpdate) -> Any:
    """Rename the run and/or replace its markdown note (an empty note removes it)."""
    return manage.update_run(db_session=db_session, run_id=run_id, name=body.name, note=body.note)


@router.put("/api/runs/{run_id}/tags", response_model=RunPublic)
def set_run_tags(db_session: SessionDep, run_id: RunId, body: TagsUpdate) -> Any:
    """Replace the run's tags; new names become tags with a colour of their own."""
    return manage.set_tags(db_session=db_session, run_id=run_id, tags=body.tags)


@router.post("/api/runs/tags", response_model=list[RunPublic])
def change_tags(db_session: SessionDep, body: BulkTags) -> Any:
    """Add and remove tags on several runs at once (all of them or, on any problem, none)."""
    return manage.change_tags(db_session=db_session, run_ids=body.ids, add=body.add, remove=body.remove)


@router.post("/api/runs/archive", response_model=list[RunPublic])
def archive_runs(db_session: SessionDep, body: BulkArchive) -> Any:
    """Archive (hide from the dashboard and the default list) or, with `archived: false`, unarchive runs."""
    return manage.set_archived(db_session=db_session, run_ids=body.ids, archived=body.archived)


@router.post("/api/runs/delete", response_model=DeleteResult)
def delete_runs(db_session: SessionDep, body: BulkDelete) -> DeleteResult:
    """Delete runs with their rows and files and answer the bytes freed; 409 naming the runs still
    training (nothing is deleted then). `dry_run` only says what would happen."""
    if body.dry_run:
        plan = manage.plan_delete(db_session=db_session, run_ids=body.ids)
    else:
        plan = manage.delete_runs(db_session=db_session, run_ids=body.ids)
    return DeleteResult(ids=plan.ids, bytes_freed=plan.bytes, active=plan.active, dry_run=body.dry_run)


@router.get("/api/tags", response_model=list[TagInfo])
def list_tags(db_session: SessionDep) -> Any:
    """Every tag, its colour and how many runs carry it."""
    return manage.list_tags(db_session=db_session)


@router.patch("/api/tags/{name}", response_model=TagPublic)
def update_tag(db_session: SessionDep, name: str, body: TagUpdate) -> Any:
    return manage.set_colour(db_session=db_session, name=name, colour=body.colour)


@router.get("/api/runs/{run_id}/metrics", response_model=list[RunEventPublic])
def run_metrics(db_session: SessionDep, run_id: RunId, after: SeqQuery = 0,
                limit: int = Query(1000, ge=1, le=10000)) -> Any:
    """Events with seq > after (metrics, epochs, status changes, evaluations, logs)."""
    # Written by the service as JSON text in RunEventPublic's shape (typed by the columns): 10,000 rows
    # are not validated through the response model again (~50 µs a row).
    return Response(runs_service.metrics_json(db_session=db_session, run_id=run_id, after=after, limit=limit),
                    media_type="application/json")


@router.get("/api/runs/{run_id}/metrics.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "the chart data as CSV"}})
def run_metrics_csv(db_session: SessionDep, run_id: RunId) -> StreamingResponse:
    """The run's curves as CSV (what its charts plot): a row per step event (training loss and accuracy
    since the previous one) and per epoch (training means, validation, learning rate), with the step,
    the fractional epoch, seconds since the first row and a Unix timestamp. At most 1,000,000 rows."""
    runs_service.get(db_session=db_session, run_id=run_id)
    return StreamingResponse(runs_service.metrics_csv(run_id), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'})


@router.get("/api/runs/{run_id}/evaluation")
def run_evaluation(db_session: SessionDep, run_id: RunId, epoch: EpochQuery = None) -> dict[str, Any]:
    """The test evaluation, or the validation evaluation of `epoch`."""
    return runs_service.evaluation(db_session=db_session, run_id=run_id, epoch=epoch)


@router.post("/api/runs/{run_id}/cancel", response_model=RunPublic)
def cancel_run(request: Request, db_session: SessionDep, run_id: RunId) -> Any:
    run = runs_service.request_cancel(db_session=db_session, run_id=run_id)
    _wake(request)
    return run


@router.post("/api/runs/{run_id}/resume", response_model=RunPublic)
def resume_run(request: Request, db_session: SessionDep, run_id: RunId) -> Any:
    run = runs_service.resume(db_session=db_session, run_id=run_id)
    _wake(request)
    return run


@router.post("/api/runs/{run_id}/fork", response_model=RunPublic, status_code=201)
def fork_run(request: Request, db_session: SessionDep, run_id: RunId, body: ForkRequest | None = None) -> Any:
    body = body or ForkRequest()
    run = runs_service.fork(db_session=db_session, run_id=run_id, epoch=body.epoch, name=body.name,
                            config_changes=body.config)
    _wake(request)
    return run


@router.delete("/api/runs/{run_id}", status_code=204)
def delete_run(db_session: SessionDep, run_id: RunId) -> Response:
    runs_service.delete(db_session=db_session, run_id=run_id)
    return Response(status_code=204)


@router.get("/api/runs/{run_id}/artifacts")
def list_artifacts(db_session: SessionDep, run_id: RunId) -> list[dict[str, Any]]:
    """The run's files. Right after a run completes its TorchScript and ONNX exports may still be being
    written: they are listed with `pending: true` (their download answers 503 with Retry-After until then)."""
    rows = runs_service.list_artifacts(db_session=db_session, run_id=run_id)
    items = [{"name": a.name, "bytes": a.bytes, "url": f"/api/runs/{run_id}/artifacts/{a.name}", "pending": False}
             for a in rows]
    if runs_service.exports_pending(run_id):
        written = {a.name for a in rows}
        items += [{"name": name, "bytes": None, "url": f"/api/runs/{run_id}/artifacts/{name}", "pending": True}
                  for name in runs_service.DEFERRED_EXPORTS if name not in written]
    items.append({"name": "pytorch", "bytes": None, "url": f"/api/runs/{run_id}/artifacts/pytorch", "pending": False})
    return items


_DOWNLOAD_NAMES = {"weights": "model.safetensors", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}


@router.get("/api/runs/{run_id}/artifacts/{name}")
def download_artifact(db_session: SessionDep, run_id: RunId, name: str) -> Any:
    """Download by artifact name only; stored paths are checked to lie inside the artifacts dir."""
    if name == "pytorch":
        run = runs_service.get(db_session=db_session, run_id=run_id)
        source = codegen.to_pytorch_source(run.spec, class_name="Model")
        return PlainTextResponse(source, headers={
            "Content-Disposition": f'attachment; filename="run-{run_id}-model.py"'})
    path = runs_service.artifact_file(db_session=db_session, run_id=run_id, name=name)
    filename = f"run-{run_id}-{_DOWNLOAD_NAMES.get(name, path.name)}"
    return FileResponse(path, filename=filename, media_type="application/octet-stream")


@router.post("/api/runs/{run_id}/predict")
def predict(request: Request, db_session: SessionDep, run_id: RunId, file: UploadFile = File(...),
            top_k: int = Query(5, ge=1, le=20)) -> dict[str, Any]:
    """An uploaded image → the top-k classes with probabilities (inference runs outside the web process)."""
    from app.runs import predict as predict_service

    data = file.file.read(10 * 1024 * 1024 + 1)
    if len(data) > 10 * 1024 * 1024:
        raise InvalidInput("the image is larger than 10 MB", [{"field": "file", "message": "too large"}])
    return predict_service.predict(db_session=db_session, run_id=run_id, image=data, top_k=top_k)


@router.get("/api/runs/{run_id}/events")
async def run_events(request: Request, run_id: RunId, after: OptionalSeqQuery = None) -> Any:
    """SSE (sse-starlette): every event carries `id: <seq>`; resumes from Last-Event-ID or ?after=
    (the later of the two: an EventSource that reconnects by itself keeps its first URL); `end`
    after a terminal status; a heartbeat comment every 15 s while quiet."""
    if not await anyio.to_thread.run_sync(run_exists, run_id):
        raise NotFound(f"run {run_id} does not exist")
    cursor = resume_cursor(request, after) or 0
    hub = request.app.state.stream_hub
    return hub.response(hub.run_events(run_id, cursor))


@router.get("/api/events")
async def all_events(request: Request, after: OptionalSeqQuery = None) -> Any:
    """SSE: status changes of all runs; `id:` is the feed id (commit order), resumable like a run's."""
    hub = request.app.state.stream_hub
    return hub.response(hub.status_events(resume_cursor(request, after)))
