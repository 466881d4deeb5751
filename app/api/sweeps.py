"""Sweeps: create (validated before anything is queued), follow, cancel, launch the best; the tutorial."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from app.api.errors import ERROR_RESPONSES
from app.api.runs import _wake
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.deps import OffsetQuery, SessionDep, SweepId
from app.runs.schemas import RunPublic
from app.sweeps import service as sweeps_service
from app.sweeps import stream as sweeps_stream
from app.sweeps import tutorial
from app.sweeps.schemas import BestRunRequest, SweepCreate, SweepPublic, TutorialRequest

router = APIRouter(tags=["sweeps"], responses=ERROR_RESPONSES)


def executor_slots(request: Request) -> int:
    """How many runs the executor trains at once (a TPE sweep keeps at most this many trials going)."""
    executor = getattr(request.app.state, "executor", None)
    return int(getattr(executor, "slots", 0) or get_settings().slots)


@router.post("/api/sweeps", response_model=SweepPublic, status_code=201)
def create_sweep(request: Request, db_session: SessionDep, body: SweepCreate) -> Any:
    """Validate the space (every setting it can produce, every architecture against the model caps
    and the data set) and queue the first trials; 422 with nothing queued when anything does not fit."""
    sweep = sweeps_service.create(db_session=db_session, sweep_in=body, slots=executor_slots(request))
    _wake(request)
    return sweeps_service.view(db_session=db_session, sweep=sweep, with_importances=False)


@router.get("/api/sweeps")
def list_sweeps(db_session: SessionDep, offset: OffsetQuery = 0,
                limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    rows, total = sweeps_service.list_(db_session=db_session, offset=offset, limit=limit)
    return {"items": [{"id": s.id, "name": s.name, "kind": s.kind, "status": s.status, "dataset": s.dataset,
                       "sampler": s.sampler, "trials_total": s.trials_total, "created_at": s.created_at}
                      for s in rows], "total": total, "offset": offset, "limit": limit}


@router.get("/api/sweeps/{sweep_id}", response_model=SweepPublic)
def get_sweep(db_session: SessionDep, sweep_id: SweepId) -> Any:
    """The sweep: status, trials (number, run_id, params, value, status), best, importances."""
    sweep = sweeps_service.get(db_session=db_session, sweep_id=sweep_id)
    return sweeps_service.view(db_session=db_session, sweep=sweep)


@router.post("/api/sweeps/{sweep_id}/cancel", response_model=SweepPublic)
def cancel_sweep(request: Request, db_session: SessionDep, sweep_id: SweepId) -> Any:
    """Queued trials never start; running ones are cancelled; no new trial is asked for."""
    sweep = sweeps_service.cancel(db_session=db_session, sweep_id=sweep_id)
    _wake(request)
    return sweeps_service.view(db_session=db_session, sweep=sweep, with_importances=False)


@router.post("/api/sweeps/{sweep_id}/best-run", response_model=RunPublic, status_code=201)
def launch_best(request: Request, db_session: SessionDep, sweep_id: SweepId, body: BestRunRequest | None = None) -> Any:
    """Train the best trial's model and settings again for more epochs (default: twice as many)."""
    body = body or BestRunRequest()
    run = sweeps_service.best_run(db_session=db_session, sweep_id=sweep_id, epochs=body.epochs, name=body.name)
    _wake(request)
    return run


@router.get("/api/sweeps/{sweep_id}/events")
async def sweep_events(request: Request, sweep_id: SweepId) -> Any:
    """Server-Sent Events: `sweep` (the whole GET answer) whenever a trial changed, `end` when it is over."""
    with session_scope(write=False) as db_session:
        sweeps_service.get(db_session=db_session, sweep_id=sweep_id)  # 404 before the stream starts

    def render() -> tuple[str, Any]:
        with session_scope(write=False) as db_session:
            sweep = sweeps_service.get(db_session=db_session, sweep_id=sweep_id)
            answer = SweepPublic.model_validate(sweeps_service.view(db_session=db_session, sweep=sweep))
            # each change sends the whole sweep: the per-epoch figures stay with GET (they can be large)
            return "sweep", answer.model_dump(mode="json", exclude={"trials": {"__all__": {"intermediate"}},
                                                                    "best": {"intermediate"}})

    hub = request.app.state.stream_hub
    return hub.response(sweeps_stream.follow(sweep_id, render, hub.poll_interval, hub.heartbeat_s))


@router.post("/api/tutorial", response_model=SweepPublic, status_code=201)
def reproduce_tutorial(request: Request, db_session: SessionDep, body: TutorialRequest | None = None) -> Any:
    """Queue the tutorial's models (MLP, MLP with dropout, the CIFAR-10 CNN or a stated substitute, the
    LSTM on MNIST rows); follow them as a sweep, compare them when they finish (`/compare?tutorial=ID`)."""
    sweep = tutorial.reproduce(db_session=db_session, body=body or TutorialRequest())
    _wake(request)
    return sweeps_service.view(db_session=db_session, sweep=sweep, with_importances=False)
