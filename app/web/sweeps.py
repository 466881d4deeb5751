"""Sweep pages: the list (with "Reproduce the tutorial"), the form for a new sweep, and the live sweep
page (its body comes again over SSE whenever a trial changes: table, charts, importances)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.architectures import presets
from app.architectures import service as architectures_service
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.deps import SessionDep, SweepId
from app.core.errors import DomainError, InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.runs.schemas import error_message
from app.sweeps import service as sweeps_service
from app.sweeps import stream as sweeps_stream
from app.sweeps import tutorial
from app.sweeps.schemas import METRICS, SweepCreate, TutorialRequest
from app.sweeps.space import VARIANTS, label, short
from app.web import sweep_charts
from app.web.architectures import FormDep
from app.web.runs import _redirect, _wake_executor
from app.web.templating import PageNotFound, found_or_404, render, templates

router = APIRouter(tags=["pages"], include_in_schema=False)

# One line a parameter, its choices on the same line.
EXAMPLE_SPACE = '{\n  "config.optimizer.lr": [0.001, 0.01],\n  "spec.dense_units": [32, 128]\n}'
FIELDS = ("name", "model", "dataset", "config.epochs", "config.batch_size", "space", "sampler", "trials",
          "parallelism", "pruner", "objective.metric", "objective.direction", "seed")


def _slots(request: Request) -> int:
    executor = getattr(request.app.state, "executor", None)
    return int(getattr(executor, "slots", 0) or get_settings().slots)


@router.get("/sweeps", response_class=HTMLResponse)
def list_page(request: Request, db_session: SessionDep) -> HTMLResponse:
    sweeps, total = sweeps_service.list_(db_session=db_session, limit=100)
    chosen, note = tutorial.plan()
    return render(request, "sweeps/list.html", {"sweeps": sweeps, "total": total, "tutorial_plan": chosen,
                                                "tutorial_note": note})


@router.get("/sweeps/new", response_class=HTMLResponse)
def new_page(request: Request, db_session: SessionDep) -> HTMLResponse:
    values = {"model": "preset:mnist-mlp", "dataset": "digits", "config.epochs": "3", "config.batch_size": "32",
              "space": EXAMPLE_SPACE, "sampler": "grid", "pruner": "none", "objective.metric": "val_accuracy"}
    return _form(request, db_session, values, {})


def _form(request: Request, db_session: Any, values: dict[str, str], errors: dict[str, str], *,
          message: str | None = None, status_code: int = 200) -> HTMLResponse:
    architectures, _ = architectures_service.list_(db_session=db_session, limit=500)
    datasets = [d for d in datasets_registry.list_datasets(get_settings().data_dir) if d.available]
    return render(request, "sweeps/new.html", {
        "values": values, "errors": errors, "message": message, "presets": presets.list_presets(),
        "architectures": architectures, "datasets": datasets, "metrics": METRICS, "example": EXAMPLE_SPACE,
        "variants": VARIANTS,
    }, partial="sweeps/_form.html", status_code=status_code)


def _body(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's text fields → a SweepCreate body, and errors by field for what cannot be read."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"name": values.get("name", ""), "sampler": values.get("sampler") or "tpe",
                            "pruner": values.get("pruner") or "none",
                            "objective": {"metric": values.get("objective.metric") or "val_accuracy"}}
    if values.get("objective.direction"):
        body["objective"]["direction"] = values["objective.direction"]
    model = values.get("model", "")
    if model.startswith("preset:"):
        body["preset"] = model[len("preset:"):]
    elif model.startswith("architecture:"):
        body["architecture_id"] = model[len("architecture:"):]
    if values.get("dataset"):
        body["dataset"] = values["dataset"]
    config = {}
    for key in ("epochs", "batch_size"):
        if values.get(f"config.{key}"):
            config[key] = values[f"config.{key}"]
    body["config"] = config
    for key in ("trials", "parallelism", "seed"):
        if values.get(key):
            body[key] = values[key]
    text = values.get("space", "").strip()
    try:
        space = json.loads(text) if text else {}  # the body limit bounds the text; RecursionError its nesting
        if not isinstance(space, dict):
            raise ValueError("not an object")
        body["space"] = space
    except (ValueError, RecursionError):
        errors["space"] = ('write the space as a JSON object: {"config.optimizer.lr": [0.001, 0.01], '
                           '"spec.dense_units": [32, 128]}')
    return body, errors


def _field_of(location: tuple) -> str:
    parts = [str(p) for p in location]
    if not parts:
        return "space"
    if parts[0] == "config" and len(parts) > 1:
        return f"config.{parts[1]}" if f"config.{parts[1]}" in FIELDS else "space"
    if parts[0] == "objective":
        return "objective.metric" if len(parts) < 2 else f"objective.{parts[1]}"
    if parts[0] in ("preset", "architecture_id"):
        return "model"
    return parts[0] if parts[0] in FIELDS else "space"


@router.post("/sweeps", response_class=HTMLResponse)
def create(request: Request, db_session: SessionDep, form: FormDep) -> Response:
    """Queue the sweep the form describes and open its page; a problem shows next to its field."""
    values = {key: str(form.get(key, "")) for key in FIELDS}
    body, errors = _body(values)
    message = None
    if not errors:
        try:
            sweep_in = SweepCreate.model_validate(body)
            sweep = sweeps_service.create(db_session=db_session, sweep_in=sweep_in, slots=_slots(request))
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if loc and loc[0] == "space" and len(loc) > 1:
                    errors.setdefault("space", f"{loc[1]}: {error_message(error)}")
                else:
                    errors.setdefault(_field_of(loc), error_message(error))
        except DomainError as exc:
            db_session.rollback()
            placed = False
            for detail in exc.details or []:
                field = str(detail.get("field", ""))
                key = "space" if field.startswith("space") else field if field in FIELDS else (
                    "config." + field.split(".")[1] if field.startswith("config.") and
                    "config." + field.split(".")[1] in FIELDS else "")
                if key:
                    errors.setdefault(key, exc.message if key == "space" else str(detail.get("message")))
                    placed = True
            if not placed or isinstance(exc, NotFound):
                message = exc.message
            if "model" not in errors and isinstance(exc, InvalidInput) and "preset" in exc.message:
                errors["model"] = exc.message
        else:
            _wake_executor(request)
            return _redirect(request, f"/sweeps/{sweep.id}")
    return _form(request, db_session, values, errors, message=message or "The sweep was not started: see below.",
                 status_code=422)


@router.post("/tutorial", response_class=HTMLResponse)
def reproduce(request: Request, db_session: SessionDep) -> Response:
    """One click: the tutorial's models queued; their sweep page opens the comparison when they finish."""
    try:
        sweep = tutorial.reproduce(db_session=db_session, body=TutorialRequest())
    except (DomainError, ValidationError) as exc:
        db_session.rollback()
        text = exc.message if isinstance(exc, DomainError) else str(exc)
        return render(request, "runs/_messages.html", {"messages": [text], "id": "tutorial-errors"}, status_code=422)
    _wake_executor(request)
    return _redirect(request, f"/sweeps/{sweep.id}")


def param_text(value: Any) -> str:
    """A parameter in the trials table: a float to 4 significant digits (0.0008913248575693473 → 0.0008913)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def body_context(view: dict[str, Any]) -> dict[str, Any]:
    """What the sweep page's body shows (rendered at first and again for each live update)."""
    top2 = sweeps_service.top_run_ids(view, 2)
    top5 = sweeps_service.top_run_ids(view, 5)
    done = view["status"] in ("completed", "cancelled") and not any(
        t["status"] in ("queued", "starting", "running") for t in view["trials"])
    compare_all = [t["run_id"] for t in view["trials"]][:12]
    numeric = {key for key in view["space"] if all(
        isinstance(v, int | float) and not isinstance(v, bool)
        for v in (t["params"].get(key) for t in view["trials"]) if v is not None)}
    return {"view": view, "short": short, "label": label, "top2": top2, "top5": top5, "done": done,
            "compare_all": compare_all, "param": param_text, "numeric": numeric,
            "pcoords": sweep_charts.parallel_coordinates(view) if view["kind"] == "search" else None,
            "by_trial": sweep_charts.objective_by_trial(view),
            "importance_chart": sweep_charts.importance_bars(view["importances"])}


def _view(db_session: Any, sweep_id: int) -> dict[str, Any]:
    return sweeps_service.view(db_session=db_session, sweep=sweeps_service.get(db_session=db_session, sweep_id=sweep_id))


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def detail_page(request: Request, db_session: SessionDep, sweep_id: SweepId) -> HTMLResponse:
    view = found_or_404(lambda: _view(db_session, sweep_id))
    return render(request, "sweeps/detail.html", body_context(view))


@router.get("/sweeps/{sweep_id}/stream")
async def stream(request: Request, sweep_id: SweepId) -> Any:
    """The page's body again (`event: sweep`) whenever a trial changed; `end` once all is over."""
    with session_scope(write=False) as db_session:
        found_or_404(lambda: sweeps_service.get(db_session=db_session, sweep_id=sweep_id))

    def render_body() -> tuple[str, str]:
        with session_scope(write=False) as db_session:
            context = body_context(_view(db_session, sweep_id))
        return "sweep", templates.get_template("sweeps/_body.html").render(context)

    hub = request.app.state.stream_hub
    return hub.response(sweeps_stream.follow(sweep_id, render_body, hub.poll_interval, hub.heartbeat_s))


@router.post("/sweeps/{sweep_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, db_session: SessionDep, sweep_id: SweepId) -> Response:
    found_or_404(lambda: sweeps_service.cancel(db_session=db_session, sweep_id=sweep_id))
    _wake_executor(request)
    return _redirect(request, f"/sweeps/{sweep_id}")


@router.post("/sweeps/{sweep_id}/best-run", response_class=HTMLResponse)
def best_run(request: Request, db_session: SessionDep, sweep_id: SweepId, form: FormDep) -> Response:
    """The best trial again, for more epochs: its run page opens."""
    epochs = str(form.get("epochs", "")).strip()
    try:
        if epochs and not (epochs.isascii() and epochs.isdigit() and len(epochs) <= 9):
            raise InvalidInput(f"“{epochs[:40]}” is not a whole number of epochs")
        run = sweeps_service.best_run(db_session=db_session, sweep_id=sweep_id,
                                      epochs=int(epochs) if epochs else None, name=None)
    except DomainError as exc:
        db_session.rollback()
        if isinstance(exc, NotFound):
            raise PageNotFound(exc.message) from exc
        return render(request, "runs/_messages.html", {"messages": [exc.message], "id": "best-errors"}, status_code=422)
    _wake_executor(request)
    return _redirect(request, f"/runs/{run.id}")
