"""Architecture pages: the saved list with presets, and the builder (form → shapes, diagram, errors).

Every builder change posts the whole form: `/architectures/editor` answers the re-rendered editor
(after add/remove/reorder/type change/import) and `/architectures/editor/live` only the results
and per-layer slots (while typing, so the inputs being typed into are never replaced).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from app.architectures import presets
from app.architectures import service as architectures_service
from app.architectures.models import Architecture
from app.architectures.schemas import ArchitectureCreate, ArchitectureUpdate
from app.core.deps import ArchitectureId, SessionDep
from app.core.errors import DomainError, NotFound
from app.web import architecture_form
from app.web.architecture_form import LAYER_FORMS, Check, Editor
from app.web.svg import DiagramBox, architecture_diagram
from app.web.templating import PageNotFound, found_or_404, is_htmx, render

router = APIRouter(tags=["pages"], include_in_schema=False)


def architecture_page(db_session: SessionDep, architecture_id: ArchitectureId) -> Architecture:
    """The saved architecture a page is about, or the 404 page."""
    return found_or_404(lambda: architectures_service.get(db_session=db_session, architecture_id=architecture_id))


ArchitecturePageDep = Annotated[Architecture, Depends(architecture_page)]


async def posted_form(request: Request) -> FormData:
    """The posted form, read here so that the routes themselves stay plain (threadpool) functions."""
    return await request.form()


FormDep = Annotated[FormData, Depends(posted_form)]


@router.get("/architectures", response_class=HTMLResponse)
def list_page(request: Request, db_session: SessionDep) -> HTMLResponse:
    """Saved architectures, newest first, and the presets to start from."""
    architectures, total = architectures_service.list_(db_session=db_session, limit=500)
    preset_cards = [
        {"preset": preset, "total_params": architectures_service.validate(spec=preset.spec).total_params}
        for preset in presets.list_presets()
    ]
    return render(request, "architectures/list.html", {
        "architectures": architectures, "total": total, "presets": preset_cards,
    })


@router.get("/architectures/new", response_class=HTMLResponse)
def new_page(request: Request, preset: str | None = None) -> HTMLResponse:
    """An empty builder, or one filled with a preset (`?preset=mnist-mlp`)."""
    editor = Editor()
    if preset:
        try:
            chosen = presets.get_preset(preset)
        except NotFound as exc:
            raise PageNotFound(exc.message) from exc
        editor = Editor.from_spec(chosen.spec, name=chosen.title, description=chosen.description)
    return _builder(request, editor, architecture_form.check(editor))


@router.get("/architectures/{architecture_id}", response_class=HTMLResponse)
def edit_page(request: Request, architecture: ArchitecturePageDep, saved: bool = False) -> HTMLResponse:
    """The builder for a saved architecture (after a save, with a link to train it with its saved settings)."""
    editor = Editor.from_spec(architecture.spec, name=architecture.name, description=architecture.description)
    result = architecture_form.check(editor)
    if saved:
        result.notice = f"Saved “{architecture.name}”."
        if architecture.training:
            result.notice += (" The launch form starts from its training settings: "
                              f"{architecture_form.training_summary(architecture.training)}.")
            result.notice_link = f"/runs/new?architecture_id={architecture.id}", "Train with these settings →"
    return _builder(request, editor, result, architecture_id=architecture.id, training=architecture.training)


@router.post("/architectures/editor", response_class=HTMLResponse)
def editor_update(request: Request, form: FormDep) -> HTMLResponse:
    """Apply the clicked action (add, remove:N, up:N, down:N, import) and re-render the editor."""
    editor = Editor.from_form(form)
    action = str(form.get("action", ""))
    import_errors: list[str] = []
    training: dict[str, Any] = {}
    if action == "import":
        editor, import_errors, training = architecture_form.import_keras(editor)
    else:
        editor.apply(action)
    result = architecture_form.check(editor)
    result.import_errors = import_errors
    if action == "import" and not import_errors:
        result.notice = f"Imported {len(editor.layers)} layers from the Keras code."
        if training:
            result.notice += (f" Its compile/fit settings: {architecture_form.training_summary(training)}. "
                              "Saving keeps them with the architecture: the launch form starts from them.")
    return _builder(request, editor, result, architecture_id=_posted_id(form))


@router.post("/architectures/editor/live", response_class=HTMLResponse)
def editor_live(request: Request, form: FormDep) -> HTMLResponse:
    """Shapes, totals, diagram and per-layer errors for the form as typed (the inputs stay as they are)."""
    editor = Editor.from_form(form)
    result = architecture_form.check(editor)
    context = _editor_context(editor, result, architecture_id=_posted_id(form))
    return render(request, "architectures/builder.html", context, partial="architectures/_live.html")


@router.post("/architectures", response_class=HTMLResponse)
def create(request: Request, db_session: SessionDep, form: FormDep) -> Response:
    """Save a new architecture; on any problem, show it next to its field and save nothing."""
    editor = Editor.from_form(form)
    result = _check_before_save(editor)
    if not result.has_errors:
        try:
            saved = architectures_service.create(db_session=db_session, architecture_in=ArchitectureCreate(
                name=editor.name, description=editor.description, spec=editor.spec(),
                training=_imported_training(editor)))
        except (DomainError, ValidationError) as exc:
            result.add_error(exc)
        else:
            return _redirect_after_save(request, saved.id)
    return _builder(request, editor, result, status_code=422)


@router.post("/architectures/{architecture_id}", response_class=HTMLResponse)
def update(request: Request, db_session: SessionDep, architecture: ArchitecturePageDep, form: FormDep) -> Response:
    """Save changes to a saved architecture; on any problem, show it and change nothing."""
    editor = Editor.from_form(form)
    result = _check_before_save(editor)
    if not result.has_errors:
        try:
            architectures_service.update(
                db_session=db_session, architecture_id=architecture.id, architecture_in=ArchitectureUpdate(
                    name=editor.name, description=editor.description, spec=editor.spec(),
                    training=_imported_training(editor)))
        except (DomainError, ValidationError) as exc:
            result.add_error(exc)
        else:
            return _redirect_after_save(request, architecture.id)
    return _builder(request, editor, result, architecture_id=architecture.id, training=architecture.training,
                    status_code=422)


def _check_before_save(editor: Editor) -> Check:
    result = architecture_form.check(editor)
    if not editor.name:
        result.name_errors.append("give the architecture a name, e.g. “MNIST MLP”")

    if not editor.layers:
        result.model_errors.append("the model has no layers: add at least one layer, or import Keras code")
    return result


def _imported_training(editor: Editor) -> dict[str, Any] | None:
    """The run settings of the Keras code in the editor's import box (its compile/fit calls) to save with
    the architecture; None (an update keeps the saved ones) when the box holds none."""
    training = architecture_form.import_keras(editor)[2] if editor.keras_code.strip() else {}
    return training or None


def _redirect_after_save(request: Request, architecture_id: int) -> Response:
    url = f"/architectures/{architecture_id}?saved=1"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _posted_id(form: FormData) -> int | None:
    raw = str(form.get("architecture_id", ""))
    return int(raw) if raw.isdigit() and len(raw) <= 19 else None  # ids are 64-bit


def _builder(request: Request, editor: Editor, result: Check, *, architecture_id: int | None = None,
             training: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    context = _editor_context(editor, result, architecture_id=architecture_id)
    context["saved_training"] = architecture_form.training_summary(training) if training else ""
    return render(request, "architectures/builder.html", context, partial="architectures/_editor.html",
                  status_code=status_code)


def _editor_context(editor: Editor, result: Check, *, architecture_id: int | None) -> dict[str, Any]:
    boxes = [
        DiagramBox(
            label=view.summary.description if view.summary else view.layer.type,
            layer_type=view.layer.type,
            shape=view.summary.output_shape if view.summary else None,
            params=view.summary.params if view.summary else None,
            error=bool(view.errors),
        )
        for view in result.layers
    ]
    try:
        input_shape = editor.parsed_input_shape()
    except ValueError:
        input_shape = None
    return {
        "editor": editor,
        "check": result,
        "input_shape": input_shape,
        "layer_types": list(LAYER_FORMS),
        "architecture_id": architecture_id,
        "save_url": f"/architectures/{architecture_id}" if architecture_id else "/architectures",
        "diagram": architecture_diagram(input_shape, boxes) if editor.layers else None,
    }
