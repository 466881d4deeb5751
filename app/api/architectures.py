"""Architectures: CRUD, validation, Keras import, PyTorch export, presets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from app.api.errors import ERROR_RESPONSES
from app.architectures import presets
from app.architectures import service as architectures_service
from app.architectures.schemas import (
    ArchitectureCreate,
    ArchitecturePublic,
    ArchitecturesPublic,
    ArchitectureUpdate,
    KerasImportRequest,
    ValidateRequest,
)
from app.core.deps import ArchitectureId, OffsetQuery, SessionDep
from app.runs.schemas import usable_config

router = APIRouter(tags=["architectures"], responses=ERROR_RESPONSES)


@router.post("/api/architectures/validate")
def validate_architecture(body: ValidateRequest) -> dict[str, Any]:
    """Shapes, parameter counts, FLOPs and memory per layer; 422 with per-layer details."""
    return architectures_service.validate(spec=body.spec, input_shape=body.input_shape).model_dump()


@router.post("/api/architectures/import-keras")
def import_keras(body: KerasImportRequest) -> dict[str, Any]:
    """Keras `Sequential` source (never executed) → spec and its summary, plus `training`: the run
    settings read from compile(...) and fit(...), ready as the `config` of POST /api/runs."""
    imported = architectures_service.import_keras_source(code=body.code)
    training = usable_config(imported["training"], imported["notes"])
    return {**imported, "summary": imported["summary"].model_dump(), "training": training}


@router.get("/api/architectures", response_model=ArchitecturesPublic)
def list_architectures(
    db_session: SessionDep, offset: OffsetQuery = 0, limit: int = Query(100, ge=1, le=500)
) -> ArchitecturesPublic:
    rows, total = architectures_service.list_(db_session=db_session, offset=offset, limit=limit)
    return ArchitecturesPublic(items=[ArchitecturePublic.model_validate(r) for r in rows], total=total)


@router.post("/api/architectures", response_model=ArchitecturePublic, status_code=201)
def create_architecture(db_session: SessionDep, body: ArchitectureCreate) -> Any:
    return architectures_service.create(db_session=db_session, architecture_in=body)


@router.get("/api/architectures/{architecture_id}", response_model=ArchitecturePublic)
def get_architecture(db_session: SessionDep, architecture_id: ArchitectureId) -> Any:
    return architectures_service.get(db_session=db_session, architecture_id=architecture_id)


@router.put("/api/architectures/{architecture_id}", response_model=ArchitecturePublic)
def update_architecture(db_session: SessionDep, architecture_id: ArchitectureId, body: ArchitectureUpdate) -> Any:
    return architectures_service.update(
        db_session=db_session, architecture_id=architecture_id, architecture_in=body
    )


@router.delete("/api/architectures/{architecture_id}", status_code=204)
def delete_architecture(db_session: SessionDep, architecture_id: ArchitectureId) -> Response:
    architectures_service.delete(db_session=db_session, architecture_id=architecture_id)
    return Response(status_code=204)


@router.get("/api/architectures/{architecture_id}/pytorch", response_class=PlainTextResponse)
def architecture_pytorch(db_session: SessionDep, architecture_id: ArchitectureId) -> str:
    """Readable, standalone PyTorch source for the architecture."""
    return architectures_service.pytorch_source(db_session=db_session, architecture_id=architecture_id)


@router.get("/api/presets")
def list_presets() -> list[dict[str, Any]]:
    """The tutorial's models, ready to train or to open in the builder."""
    return [presets_public(p) for p in presets.list_presets()]


def presets_public(preset: presets.Preset) -> dict[str, Any]:
    data = preset.model_dump()
    summary = architectures_service.validate(spec=data["spec"])
    data["total_params"] = summary.total_params
    return data
