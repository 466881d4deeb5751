"""Request and response bodies for architectures, shared by the JSON API and the HTML forms."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.models_base import UtcDatetime
from app.runs.schemas import TrainConfigIn

TRAINING_HELP = ("run settings saved with the architecture (a run `config`, e.g. its Keras compile/fit calls): "
                 "the launch form starts from them, and POST /api/runs uses them for any setting its config "
                 "leaves out")


class ArchitectureCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    spec: dict[str, Any]
    training: TrainConfigIn | None = Field(default=None, description=TRAINING_HELP)


class ArchitectureUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    spec: dict[str, Any] | None = None
    training: TrainConfigIn | None = Field(default=None, description=TRAINING_HELP + " ({} clears them)")


class ArchitecturePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    spec: dict[str, Any]
    training: dict[str, Any]
    total_params: int
    trainable_params: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ArchitecturesPublic(BaseModel):
    items: list[ArchitecturePublic]
    total: int


class ValidateRequest(BaseModel):
    spec: Any
    input_shape: list[int] | None = None


class KerasImportRequest(BaseModel):
    code: str = Field(max_length=200_000)


def stored_training(training: TrainConfigIn | None) -> dict[str, Any]:
    """The settings as stored: only those given (the schema's defaults stay defaults), as JSON."""
    return training.model_dump(mode="json", exclude_unset=True) if training is not None else {}
