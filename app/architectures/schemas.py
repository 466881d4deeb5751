"""Request and response bodies for architectures, shared by the JSON API and the HTML forms."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.models_base import UtcDatetime


class ArchitectureCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    spec: dict[str, Any]


class ArchitectureUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    spec: dict[str, Any] | None = None


class ArchitecturePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    spec: dict[str, Any]
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
