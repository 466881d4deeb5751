"""Data sets: the registry, sample images, uploads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Response, UploadFile

from app.api.errors import ERROR_RESPONSES
from app.core.deps import SampleIndex, SettingsDep
from app.core.errors import InvalidInput
from app.datasets import registry as datasets_registry

router = APIRouter(tags=["datasets"], responses=ERROR_RESPONSES)


def _public(info: datasets_registry.DatasetInfo) -> dict[str, Any]:
    return info.to_dict()


@router.get("/api/datasets")
def list_datasets(settings: SettingsDep) -> list[dict[str, Any]]:
    return [_public(info) for info in datasets_registry.list_datasets(settings.data_dir)]


@router.get("/api/datasets/{name}")
def get_dataset(settings: SettingsDep, name: str) -> dict[str, Any]:
    return _public(datasets_registry.get_dataset_info(name, settings.data_dir))


@router.get("/api/datasets/{name}/samples/{index}.png")
def dataset_sample(settings: SettingsDep, name: str, index: SampleIndex, split: str = "test") -> Response:
    """One sample rendered as a PNG (for galleries of misclassified examples)."""
    png = datasets_registry.render_sample_png(name, settings.data_dir, index, split=split)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get("/api/datasets/{name}/points.png")
def dataset_points(settings: SettingsDep, name: str, split: str = "test") -> Response:
    """A 2-D points data set's split as one scatter plot, a dot per sample coloured by class."""
    png = datasets_registry.render_points_png(name, settings.data_dir, split=split)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.post("/api/datasets", status_code=201)
def upload_dataset(
    settings: SettingsDep,
    name: str = Form(...),
    file: UploadFile = File(...),
    label_column: str = Form("label"),
) -> dict[str, Any]:
    """A CSV (features + label column) or a zip of class folders of images."""
    filename = (file.filename or "").lower()
    if filename.endswith(".csv"):
        info = datasets_registry.import_csv(name, file.file, settings.data_dir, label_column=label_column)
    elif filename.endswith(".zip"):
        info = datasets_registry.import_image_zip(name, file.file, settings.data_dir)
    else:
        raise InvalidInput("upload a .csv file (features + label column) or a .zip of class folders",
                           [{"field": "file", "message": "expected .csv or .zip"}])
    return _public(info)
