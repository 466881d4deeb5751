"""Run pages: the launch form, one-click quick starts, the live run page and its finished results.

The live page gets its numbers from the JSON/SSE API (`/api/runs/{id}/events`) in static/js/run.js;
the routes here render HTML: the page, the results once the run ends, the confusion-matrix
heatmap for one evaluation, a gallery of misclassified test images, and the cancel/resume/fork
actions. Every route calls the runs service; none trains anything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.architectures import presets, recipes
from app.architectures import service as architectures_service
from app.core.config import get_settings
from app.core.deps import (
    ArchitectureIdQuery,
    ClassQuery,
    EpochQuery,
    PageQuery,
    RunId,
    SessionDep,
)
from app.core.errors import DomainError, InvalidInput, NotFound
from app.datasets import download
from app.datasets import registry as datasets_registry
from app.runs import figures as run_figures
from app.runs import service as runs_service
from app.runs.models import TERMINAL_STATUSES, Run
from app.runs.precision import recorded_precision
from app.runs.schemas import ForkRequest, RunCreate, describe, nest
from app.web import run_form, run_views
from app.web.architectures import FormDep
from app.web.templating import found_or_404, is_htmx, render

router = APIRouter(tags=["pages"], include_in_schema=False)

# One click, offline, seconds on a laptop CPU: the run a new user should see first.
QUICK_STARTS = {"digits-mlp": {"name": "digits MLP (quick start)", "spec": run_form.QUICK_SPECS["digits-mlp"][1],
                               "dataset": "digits", "config": {"epochs": 15, "batch_size": 32}}}
# Sensible first settings for a preset on its data set (the rest are the engine's defaults).
PRESET_CONFIG = {"mnist": {"epochs": 5, "batch_size": 64}, "fashion_mnist": {"epochs": 5, "batch_size": 64},
                 "cifar10": {"epochs": 10, "batch_size": 128}}


def run_page(db_session: SessionDep, run_id: RunId) -> Run:
    """The run a page is about, or the 404 page."""
    return found_or_404(lambda: runs_service.get(db_session=db_session, run_id=run_id))


RunPageDep = Annotated[Run, Depends(run_page)]


def launch_options() -> list[dict[str, Any]]:
    """The quick start and the presets, each with whether its data set is here (and how to get it if not:
    `download`, the state of its download)."""
    data_dir = get_settings().data_dir
    options = [{"key": "quick:digits-mlp", "title": "digits MLP", "dataset": "digits", "available": True,
                "description": "8x8 digits, one hidden layer of 32 units: trains in seconds, offline.",
                "how_to_get": None}]
    for preset in presets.list_presets():
        info = datasets_registry.get_dataset_info(preset.dataset, data_dir)
        options.append({"key": f"preset:{preset.name}", "title": preset.title, "dataset": preset.dataset,
                        "available": info.available, "description": preset.description,
                        "how_to_get": info.how_to_get,
                        "download": None if info.available or preset.dataset not in download.SOURCES
                        else download.view(preset.dataset, data_dir)})
    return options


def _quick_run(key: str) -> RunCreate:
    kind, _, name = key.partition(":")
    if kind == "quick" and name in QUICK_STARTS:
        return RunCreate.model_validate(QUICK_STARTS[name])
    preset = presets.get_preset(name) if kind == "preset" else None
    if preset is None:
        raise NotFound(f"no quick start named {key!r}")
    return RunCreate(preset=preset.name, dataset=preset.dataset, config=PRESET_CONFIG.get(preset.dataset, {}))


def _wake_executor(request: Request) -> None:
    executor = getattr(request.app.state, "executor", None)
    if executor is not None:
        executor.wake()


def _redirect(request: Request, url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# ---------- launching ----------

@router.get("/runs/new", response_class=HTMLResponse)
def new_page(request: Request, db_session: SessionDep, architecture_id: ArchitectureIdQuery = None,
             preset: str | None = None, dataset: str = "") -> HTMLResponse:
    """The launch form, optionally with a saved architecture (its saved settings filled in and, unless
    one is named, the first data set here that it fits), a preset, or a data set (and its default model)
    chosen; `config.*` in the query fill in settings too."""
    model, settings, notice = "", {}, ""
    if architecture_id:
        model = f"architecture:{architecture_id}"
        try:
            architecture = architectures_service.get(db_session=db_session, architecture_id=architecture_id)
        except NotFound:
            architecture = None  # the form says so when it is posted
        if architecture is not None:
            settings = run_form.config_fields(architecture.training)
            if settings:
                notice = f"The training settings saved with “{architecture.name}” are filled in."
            fits = runs_service.datasets_for(architecture.spec)
            dataset = dataset or (fits[0].name if fits else "")
    elif preset:
        model = f"preset:{preset}"
    elif dataset:
        model = run_form.DEFAULT_MODEL
    settings.update(run_form.config_query(request.query_params))
    return _form_page(request, db_session, run_form.prefilled(model=model, dataset=dataset, settings=settings,
                                                              notice=notice))


@router.post("/runs", response_class=HTMLResponse)
def launch(request: Request, db_session: SessionDep, form: FormDep) -> Response:
    """Queue the run the form describes and open its page; on any problem, show it next to its field."""
    posted = run_form.from_form(form)
    run_in = run_form.to_run_create(posted)
    if run_in is not None:
        try:
            run = runs_service.create(db_session=db_session, run_in=run_in)
        except DomainError as exc:
            db_session.rollback()
            run_form.add_domain_error(posted, exc)
        else:
            _wake_executor(request)
            return _redirect(request, f"/runs/{run.id}")
    return _form_page(request, db_session, posted, status_code=422)


@router.post("/runs/quick", response_class=HTMLResponse)
def quick_launch(request: Request, db_session: SessionDep, form: FormDep) -> Response:
    """One click: the quick start or a preset with sensible defaults for its data set."""
    key = str(form.get("launch", ""))
    try:
        run_in = _quick_run(key)
        info = datasets_registry.get_dataset_info(run_in.dataset or "", get_settings().data_dir)
        if not info.available:  # the button is disabled; a hand-made POST gets the same answer
            raise InvalidInput(info.how_to_get or f"{info.name} is not on this machine")
        run = runs_service.create(db_session=db_session, run_in=run_in)
    except (DomainError, ValidationError) as exc:  # a settings limit below the quick start's epochs
        db_session.rollback()
        text = exc.message if isinstance(exc, DomainError) else describe(exc)
        return render(request, "runs/_messages.html", {"messages": [text], "id": "launch-errors"}, status_code=422)
    _wake_executor(request)
    return _redirect(request, f"/runs/{run.id}")


@router.post("/runs/recipe", response_class=HTMLResponse)
def apply_recipe(request: Request, db_session: SessionDep, form: FormDep) -> HTMLResponse:
    """The launch form again with a recipe's settings filled in (what else was typed stays); a model that
    the recipe is not for becomes the MNIST perceptron it was measured on. Nothing is queued."""
    posted = run_form.from_form(form)
    name = posted.values.pop("recipe", "")
    recipe = recipes.get(name)
    if recipe is None:
        posted.add("", f"no recipe named “{name[:40]}”: choose one of {', '.join(recipes.RECIPES)}")
        return _form_page(request, db_session, posted, status_code=422)
    posted.values.update(recipes.form_fields(recipe))
    notice = f"The {recipe.title.lower()}'s settings are filled in."
    if posted.value("model").removeprefix("preset:") not in recipe.presets:
        posted.values.update({"model": f"preset:{recipe.presets[0]}", "dataset": ""})
        notice += f" It is made for the MNIST perceptrons, so the model is now {presets.get_preset(recipe.presets[0]).title}."
    posted.notice = notice
    return _form_page(request, db_session, posted)


def _form_page(request: Request, db_session: Any, posted: run_form.RunForm, status_code: int = 200) -> HTMLResponse:
    architectures, _ = architectures_service.list_(db_session=db_session, limit=500)
    datasets = datasets_registry.list_datasets(get_settings().data_dir)
    return render(request, "runs/new.html", {
        "form": posted, "architectures": architectures, "presets": presets.list_presets(), "datasets": datasets,
        "quick_specs": run_form.QUICK_SPECS, "devices": run_form.DEVICES, "recipes": recipes.view(),
    }, partial="runs/_form.html", status_code=status_code)


# ---------- one run ----------

@router.get("/runs/{run_id}", response_class=HTMLResponse)
def detail_page(request: Request, db_session: SessionDep, run: RunPageDep) -> HTMLResponse:
    """The live page: charts and log fed by SSE; results, downloads and predict once it ends."""
    info = _dataset_info(run.dataset)
    shape = list(run.spec.get("input_shape") or (info.input_shape if info else []))
    step = runs_service.latest_step(db_session=db_session, run=run)
    from app.web.run_manage import manage_context  # (that module builds on this one)

    return render(request, "runs/detail.html", {
        **manage_context(run),
        "run": run, "progress": run_views.progress(run, step), "architecture": run_views.architecture_view(run.spec),
        "dataset_info": info, "terminal": run.status in TERMINAL_STATUSES,
        "can_draw": len(shape) == 3 and shape[0] == 1 and shape[1] == shape[2] and shape[1] in (8, 28),
        "input_shape": shape, "latest_checkpoint": runs_service.latest_checkpoint_epoch(run.id),
        "precision": recorded_precision(db_session, run.id),
        **_results_context(db_session, run),
    })


@router.get("/runs/{run_id}/results", response_class=HTMLResponse)
def results(request: Request, db_session: SessionDep, run: RunPageDep) -> HTMLResponse:
    """Test metrics, confusion matrix, per-class table and downloads (fetched when the stream ends)."""
    info = _dataset_info(run.dataset)
    shape = list(run.spec.get("input_shape") or (info.input_shape if info else []))
    return render(request, "runs/_results.html", {
        "run": run, "dataset_info": info, "input_shape": shape,
        "can_draw": len(shape) == 3 and shape[0] == 1 and shape[1] == shape[2] and shape[1] in (8, 28),
        **_results_context(db_session, run),
    })


@router.get("/runs/{run_id}/downloads", response_class=HTMLResponse)
def downloads(request: Request, db_session: SessionDep, run: RunPageDep) -> HTMLResponse:
    """The downloads panel alone: it reloads itself while the exports left for after completion are written."""
    artifacts = {a.name: a for a in runs_service.list_artifacts(db_session=db_session, run_id=run.id)}
    return render(request, "runs/_downloads.html", {"run": run, "artifacts": artifacts,
                                                     "exports_pending": _exports_pending(run)})


def _exports_pending(run: Run) -> bool:
    return run.status == "completed" and runs_service.exports_pending(run.id)


@router.get("/runs/{run_id}/confusion", response_class=HTMLResponse)
def confusion(request: Request, db_session: SessionDep, run: RunPageDep, split: str = "test",
              epoch: EpochQuery = None, normalized: bool = False, gallery: str = "",
              gallery_page: PageQuery = 1) -> HTMLResponse:
    """The heatmap (and per-class table) of the test evaluation, or of the validation evaluation of `epoch`.

    The gallery follows the matrix: the controls carry the open gallery's cell and page (`gallery=3,4`),
    and the answer replaces it out of band: the same page again under the test matrix, closed under a
    validation one (whose cells have no images)."""
    context = _confusion_context(db_session, run, split=split, epoch=epoch, normalized=normalized)
    shown = context["shown"]
    cell = None
    if shown is not None and shown.get("split") == "test":
        cell = run_views.parse_cell(gallery, len(shown.get("confusion_matrix") or []))
    view = _gallery(run, shown, *cell, gallery_page) if cell else None
    return render(request, "runs/_confusion.html", {"run": run, **context, "gallery": view, "gallery_oob": True})


@router.get("/runs/{run_id}/gallery", response_class=HTMLResponse)
def gallery(request: Request, db_session: SessionDep, run: RunPageDep, true: ClassQuery,
            pred: ClassQuery, page: PageQuery = 1) -> HTMLResponse:
    """Test images of class `true` that the model called `pred`, GALLERY_PAGE at a time."""
    view = _gallery(run, _test_evaluation(db_session, run) or {}, true, pred, page)
    return render(request, "runs/_gallery.html", {"run": run, "gallery": view})


def _gallery(run: Run, evaluation: dict[str, Any], true: int, pred: int, page: int) -> run_views.GalleryView:
    info = _dataset_info(run.dataset)
    return run_views.gallery_view(evaluation, true, pred, page, kind=info.kind if info else "image")


@router.post("/runs/{run_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, db_session: SessionDep, run: RunPageDep) -> Response:
    """Ask the run to stop; the page learns that it did from the event stream."""
    runs_service.request_cancel(db_session=db_session, run_id=run.id)
    _wake_executor(request)
    if is_htmx(request):
        return render(request, "runs/_messages.html", {"id": "action-messages", "notices": [
            "Cancelling: the run stops at its next step."]})
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.post("/runs/{run_id}/resume", response_class=HTMLResponse)
def resume(request: Request, db_session: SessionDep, run: RunPageDep) -> Response:
    """Queue a failed, cancelled or interrupted run again from its last checkpoint."""
    try:
        runs_service.resume(db_session=db_session, run_id=run.id)
    except DomainError as exc:
        db_session.rollback()
        return _action_error(request, exc.message)
    _wake_executor(request)
    return _redirect(request, f"/runs/{run.id}")


@router.post("/runs/{run_id}/fork", response_class=HTMLResponse)
def fork(request: Request, db_session: SessionDep, run: RunPageDep, form: FormDep) -> Response:
    """A new run from a checkpoint of this one with the settings the form changes (`config.*` fields, as
    on the launch form), validated by the API's ForkRequest and then as the whole merged config."""
    values = run_form.from_form(form).values
    try:
        body = ForkRequest.model_validate({"epoch": values.get("epoch") or None, "config": nest(values)})
        child = runs_service.fork(db_session=db_session, run_id=run.id, epoch=body.epoch, name=None,
                                  config_changes=body.config)
    except (DomainError, ValidationError) as exc:
        db_session.rollback()
        return _action_error(request, exc.message if isinstance(exc, DomainError) else describe(exc))
    _wake_executor(request)
    return _redirect(request, f"/runs/{child.id}")


def _action_error(request: Request, message: str) -> HTMLResponse:
    return render(request, "runs/_messages.html", {"id": "action-messages", "messages": [message]}, status_code=422)


def _dataset_info(name: str) -> Any:
    try:
        return datasets_registry.get_dataset_info(name, get_settings().data_dir)
    except DomainError:
        return None


def _test_evaluation(db_session: Any, run: Run) -> dict[str, Any] | None:
    try:
        return runs_service.evaluation(db_session=db_session, run_id=run.id)
    except NotFound:
        return None


def _results_context(db_session: Any, run: Run) -> dict[str, Any]:
    evaluation = _test_evaluation(db_session, run)
    artifacts = {a.name: a for a in runs_service.list_artifacts(db_session=db_session, run_id=run.id)}
    return {"evaluation": evaluation, "artifacts": artifacts, "exports_pending": _exports_pending(run),
            "figure_rows": run_views.figure_rows(run_figures.for_run(db_session, run)),
            **_confusion_context(db_session, run, split="test", epoch=None, normalized=False, test=evaluation)}


def _confusion_context(db_session: Any, run: Run, *, split: str, epoch: int | None, normalized: bool,
                       test: dict[str, Any] | None = None) -> dict[str, Any]:
    """The evaluation to draw: the test one, or a validation epoch (the latest when none is asked for or
    when there is no test evaluation yet, e.g. for a cancelled run)."""
    val_epochs = runs_service.validation_epochs(db_session=db_session, run_id=run.id)
    chosen = None
    if split != "val":
        chosen = test or _test_evaluation(db_session, run)
    if chosen is None and val_epochs:
        epoch = epoch if epoch in val_epochs else val_epochs[-1]
        chosen = runs_service.evaluation(db_session=db_session, run_id=run.id, epoch=epoch)
    if chosen is None:
        return {"shown": None, "matrix": None, "val_epochs": val_epochs, "normalized": normalized}
    view = run_views.confusion_view(chosen.get("confusion_matrix") or [], chosen.get("class_names") or [],
                                    normalized=normalized)
    return {"shown": chosen, "matrix": view, "val_epochs": val_epochs, "normalized": normalized}
