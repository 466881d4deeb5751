"""The data sets page: what is here (sample grids, class balance), how to get the rest (a download
started as its own process, its progress shown until it is done), and uploads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from app.core.config import get_settings
from app.core.errors import DomainError
from app.datasets import download
from app.datasets import registry as datasets_registry
from app.datasets.render import class_colour
from app.web.architectures import FormDep
from app.web.templating import PageNotFound, is_htmx, render

router = APIRouter(tags=["pages"], include_in_schema=False)

SAMPLES = 16


def _cards() -> list[dict[str, Any]]:
    """Per data set: its class counts and what to preview: sample images (image and sequence sets), the
    whole test split as a scatter with a colour legend (2-D points), or the first rows (tables)."""
    data_dir = get_settings().data_dir
    cards = []
    for info in datasets_registry.list_datasets(data_dir):
        counts: dict[str, list[int]] | None = None
        rows = None
        problem = None
        if info.available:
            try:
                counts = datasets_registry.class_counts(info.name, data_dir)
                if info.kind == "tabular":
                    rows = datasets_registry.sample_rows(info.name, data_dir)
            except DomainError as exc:  # e.g. a built-in that cannot be generated here
                problem = exc.message
        test_size = sum(counts["test"]) if counts else info.test_size
        pictures = info.kind in ("image", "sequence")
        samples = min(SAMPLES if info.kind == "image" else 4, test_size) if pictures else 0
        largest = max(counts["train"], default=0) if counts else 0
        legend = [(name, class_colour(i)) for i, name in enumerate(info.class_names)] if info.kind == "points" else []
        cards.append({"info": info, "counts": counts, "largest": largest, "samples": list(range(samples)),
                      "rows": rows, "legend": legend, "problem": problem,
                      "download": None if info.available or info.name not in download.SOURCES
                      else download.view(info.name, data_dir)})
    return cards


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, uploaded: str = "") -> HTMLResponse:
    """Every data set with samples and class counts; the upload form."""
    return _page(request, {"values": {"label_column": "label"}, "errors": {}},
                 notice=f"Imported “{uploaded}”." if uploaded else "")


@router.post("/datasets", response_class=HTMLResponse)
def upload(request: Request, form: FormDep) -> Response:
    """Import a CSV (features + label column) or a zip of class folders; errors go next to their field."""
    name = str(form.get("name", "")).strip()
    label_column = str(form.get("label_column", "")).strip() or "label"
    file = form.get("file")
    errors: dict[str, list[str]] = {}
    data_dir = get_settings().data_dir
    try:
        datasets_registry.check_upload_name(name, data_dir)
    except DomainError as exc:
        errors["name"] = [exc.message]
    filename = file.filename.lower() if isinstance(file, UploadFile) and file.filename else ""
    if not filename:
        errors["file"] = ["choose a .csv file (features + a label column) or a .zip of class folders of images"]
    elif not filename.endswith((".csv", ".zip")):
        errors["file"] = [f"“{file.filename}” is neither .csv nor .zip: upload a CSV with a label column or a zip "
                          "with one folder of images per class"]
    if not errors and isinstance(file, UploadFile):
        try:
            if filename.endswith(".csv"):
                datasets_registry.import_csv(name, file.file, data_dir, label_column=label_column)
            else:
                datasets_registry.import_image_zip(name, file.file, data_dir)
        except DomainError as exc:
            # By the error's own field, never by its wording: whatever names no form field is the file's.
            fields = [d["field"] for d in exc.details if d.get("field") in ("name", "file", "label_column")]
            errors.setdefault(fields[0] if fields else "file", []).append(exc.message)
    if errors:
        values = {"name": name, "label_column": label_column}
        return _page(request, {"values": values, "errors": errors}, status_code=422)
    url = f"/datasets?uploaded={name}#dataset-{name}"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _downloadable(name: str) -> str:
    if name not in download.SOURCES:
        raise PageNotFound(f"{name!r} cannot be downloaded: only mnist, fashion_mnist and cifar10 can")
    return name


@router.post("/datasets/{name}/download", response_class=HTMLResponse)
def start_download(request: Request, name: str, buttons: bool = True) -> Response:
    """Download a built-in in a process of its own (`trainboard data download NAME`), never in this one."""
    download.start(_downloadable(name), get_settings().data_dir)
    if not is_htmx(request):
        return RedirectResponse(f"/datasets#dataset-{name}", status_code=303)
    return download_state(request, name, buttons)


@router.get("/datasets/{name}/download", response_class=HTMLResponse)
def download_state(request: Request, name: str, buttons: bool = True) -> HTMLResponse:
    """A download's progress (polled while it runs); once it is done the page reloads with the data set.
    `buttons=0`: the panel has no Download button of its own (the dashboard's preset buttons are that)."""
    state = download.view(_downloadable(name), get_settings().data_dir)
    done = state["state"] == download.DONE and state["info"].available
    return render(request, "datasets/_download.html", {"d": state, "button": buttons},
                  headers={"HX-Refresh": "true"} if done and is_htmx(request) else None)


def _limits() -> str:
    from app.core.limits import format_size
    from app.datasets.uploads import MAX_SIDE

    settings = get_settings()
    return (f"at most {format_size(settings.max_upload_bytes)}; a zip's images at most "
            f"{settings.max_upload_pixels / 1e6:g} million pixels in all, resized to {MAX_SIDE}x{MAX_SIDE} or less")


def _page(request: Request, upload: dict[str, Any], *, notice: str = "", status_code: int = 200) -> HTMLResponse:
    upload = {**upload, "limits": _limits()}
    return render(request, "datasets/list.html", {"cards": _cards(), "upload": upload, "notice": notice},
                  partial="datasets/_upload.html", status_code=status_code)
