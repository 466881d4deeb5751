"""Ingest over HTTP: trainers and users' own scripts report a run's events, status and files.

Every route but `POST /api/ingest/runs` (an external run, which answers its token once) takes the
run's ingest token as `Authorization: Bearer <token>`: 401 without one, 403 for another run's token
or once the run has ended. The rules live in app/runs/ingest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as Path_
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from app.api.errors import ERROR_RESPONSES, ErrorBody
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.deps import RunId, SessionDep
from app.core.errors import TooLarge
from app.runs import ingest, lifecycle
from app.runs.models import Run
from app.runs.service import checkpoint_path, run_dir
from app.runs.store import RunOrder

bearer = HTTPBearer(auto_error=False, description="the run's ingest token")


def _require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                   ) -> HTTPAuthorizationCredentials:
    """401 before anything else of the request is looked at (its body included)."""
    if credentials is None or not credentials.credentials:
        raise ingest.Unauthenticated("send the run's ingest token: Authorization: Bearer <token>")
    return credentials


Credentials = Annotated[HTTPAuthorizationCredentials, Depends(_require_token)]


class GapBody(BaseModel):
    detail: str
    expected_seq: int
    errors: list[dict[str, Any]] = []


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorBody, "description": "No ingest token"},
    403: {"model": ErrorBody, "description": "Not this run's token, or the run has ended"},
    409: {"model": GapBody, "description": "A gap: send from `expected_seq`"},
    413: {"model": ErrorBody, "description": "An artifact over TRAINBOARD_MAX_ARTIFACT_BYTES"},
}

# While a file streams in, the run's heartbeat is renewed this often.
UPLOAD_BEAT_S = 1.0

router = APIRouter(tags=["ingest"], responses=AUTH_RESPONSES)


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


@router.post("/api/ingest/runs", response_model=ingest.ExternalRunCreated, status_code=201)
def create_external_run(request: Request, db_session: SessionDep, body: ingest.ExternalRunCreate) -> Any:
    """A run logged by your own script (trainboard.init): created running; its token is shown once."""
    run, token = ingest.create_external(db_session, body)
    db_session.commit()
    return ingest.ExternalRunCreated(id=run.id, token=token, url=f"{str(request.base_url).rstrip('/')}/runs/{run.id}")


@router.post("/api/ingest/runs/{run_id}/events", response_model=ingest.Accepted)
def post_events(db_session: SessionDep, run_id: RunId, body: ingest.IngestBatch, credentials: Credentials) -> Any:
    """A batch of events numbered by the trainer; a batch sent again is stored once; a gap is a 409."""
    for _ in range(5):
        ingest.authorize(db_session, run_id, _token(credentials))
        try:
            answer = ingest.ingest_events(db_session, run_id, body)
        except ingest.RetryBatch:
            db_session.rollback()
            continue
        except ingest.SeqGap as gap:
            db_session.rollback()
            return JSONResponse({"detail": gap.message, "expected_seq": gap.expected_seq, "errors": []},
                                status_code=409)
        db_session.commit()
        return answer
    return JSONResponse({"detail": "the batch raced other deliveries: send it again", "errors": []}, status_code=503)


@router.post("/api/ingest/runs/{run_id}/heartbeat", response_model=ingest.CancelFlag)
def post_heartbeat(db_session: SessionDep, run_id: RunId, credentials: Credentials) -> Any:
    ingest.authorize(db_session, run_id, _token(credentials))
    answer = ingest.heartbeat(db_session, run_id)
    db_session.commit()
    return answer


@router.post("/api/ingest/runs/{run_id}/status", response_model=ingest.ReportAnswer)
def post_status(db_session: SessionDep, run_id: RunId, body: ingest.StatusReport, credentials: Credentials) -> Any:
    """running (first report), then completed, failed or cancelled: through the run lifecycle."""
    ingest.authorize(db_session, run_id, _token(credentials))
    answer = ingest.report(db_session, run_id, body)
    db_session.commit()
    return answer


@router.get("/api/ingest/runs/{run_id}/order", response_model=RunOrder)
def get_order(db_session: SessionDep, run_id: RunId, credentials: Credentials) -> Any:
    """What the trainer needs to train the run (spec, data set, settings, where to resume)."""
    ingest.authorize(db_session, run_id, _token(credentials))
    return ingest.order(db_session, run_id)


async def _authorized(run_id: int, token: str | None, where: Callable[[Run], Path]) -> Path:
    def check() -> Path:
        with session_scope(write=False) as db_session:
            return where(ingest.authorize(db_session, run_id, token))

    return await anyio.to_thread.run_sync(check)


def _beat(run_id: int) -> None:
    with session_scope() as db_session:
        lifecycle.heartbeat(db_session, run_id)


async def _receive(request: Request, target: Path, run_id: int) -> int:
    """Stream the body into `target` (replaced whole, or not at all), at most max_artifact_bytes.
    An upload in progress counts as the trainer's heartbeat (its sender sends none meanwhile)."""
    limit = get_settings().max_artifact_bytes
    last_beat = time.monotonic()
    created = [d for d in (target.parent.parent, target.parent) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    size, done = 0, False
    try:
        with open(part, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the file is over the limit of {limit} bytes: raise TRAINBOARD_MAX_ARTIFACT_BYTES")
                out.write(chunk)
                if time.monotonic() - last_beat > UPLOAD_BEAT_S:
                    last_beat = time.monotonic()
                    await anyio.to_thread.run_sync(_beat, run_id)
        os.replace(part, target)
        done = True
    finally:
        if not done:
            with contextlib.suppress(OSError):
                part.unlink()
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only when empty: nothing of a refused upload stays
    return size


@router.put("/api/ingest/runs/{run_id}/artifacts/{name}", response_model=dict[str, Any])
async def put_artifact(request: Request, run_id: RunId, name: str, credentials: Credentials,
                       filename: Annotated[str | None, Query(max_length=50, description=(
                           "the file's own name in the run's folder (default: the artifact's name)"))] = None) -> Any:
    """A file of the run (an export), streamed: kept in the run's folder, at most TRAINBOARD_MAX_ARTIFACT_BYTES."""
    ingest.artifact_path(run_dir(run_id), name)  # the name is checked even when the file has its own

    def where(run: Run) -> Path:
        return ingest.artifact_path(run_dir(run_id), filename or name)

    target = await _authorized(run_id, _token(credentials), where)
    size = await _receive(request, target, run_id)

    def record() -> None:
        with session_scope() as db_session:
            ingest.record_upload(db_session, run_id, name, target)

    await anyio.to_thread.run_sync(record)
    return {"name": name, "bytes": size}


@router.put("/api/ingest/runs/{run_id}/checkpoints/{epoch}", response_model=dict[str, Any])
async def put_checkpoint(request: Request, run_id: RunId, epoch: Annotated[int, Path_(ge=1, le=ingest.INT32_MAX)],
                         credentials: Credentials,
                         pruned: Annotated[str, Query(max_length=100_000, pattern=r"^[0-9,]*$",
                                                      description="epochs whose checkpoints the trainer deleted")] = "") -> Any:
    """A remote trainer's epoch checkpoint, streamed to where a local trainer writes it (resume and fork
    use it); the server then deletes its copies of the checkpoints the trainer pruned."""
    target = await _authorized(run_id, _token(credentials), lambda run: checkpoint_path(run_id, epoch))
    size = await _receive(request, target, run_id)
    drop = {int(e) for e in pruned.split(",") if e and len(e) < 10} - {epoch}
    await anyio.to_thread.run_sync(lambda: ingest.prune_checkpoints(target.parent, drop))
    return {"epoch": epoch, "bytes": size}


@router.get("/api/ingest/runs/{run_id}/checkpoint", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
async def get_checkpoint(run_id: RunId, credentials: Credentials) -> Any:
    """The checkpoint the run's order resumes or forks from (404 when it starts fresh)."""
    path = await _authorized(run_id, _token(credentials), ingest.resume_checkpoint)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


@router.get("/api/ingest/runs/{run_id}/dataset", response_model=ingest.DatasetManifest)
async def get_dataset(run_id: RunId, credentials: Credentials) -> Any:
    """The run's data set as files with their sha256 (a remote trainer caches them by hash)."""
    token = _token(credentials)

    def manifest() -> ingest.DatasetManifest:
        with session_scope(write=False) as db_session:
            run = ingest.authorize(db_session, run_id, token)
            db_session.expunge(run)
        return ingest.dataset_manifest(run)

    return await anyio.to_thread.run_sync(manifest)


@router.get("/api/ingest/runs/{run_id}/dataset/{name}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
async def get_dataset_file(run_id: RunId, name: str, credentials: Credentials) -> Any:
    """One file of the run's data set (the names its manifest lists)."""
    path = await _authorized(run_id, _token(credentials), lambda run: ingest.dataset_file(run, name))
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
