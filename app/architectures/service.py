"""Architecture use cases: validate, import, save, list. Keyword-only, session first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.architectures import codegen, keras_import, summary
from app.architectures.models import Architecture
from app.architectures.schemas import ArchitectureCreate, ArchitectureUpdate, stored_training
from app.architectures.spec import parse_spec
from app.core.config import get_settings
from app.core.errors import Conflict, NotFound


def validate(*, spec: Any, input_shape: list[int] | None = None) -> summary.Summary:
    """Parse and summarize a spec under the configured caps; raises SpecError with layer details."""
    settings = get_settings()
    parsed = parse_spec(spec)
    return summary.summarize(
        parsed,
        input_shape,
        max_params=settings.max_params,
        max_activation_bytes=settings.max_activation_bytes,
    )


def import_keras_source(*, code: str) -> dict[str, Any]:
    """Keras source (never executed) → {"spec", "summary", "training", "notes"}: `training` holds the
    run settings found in compile(...) and fit(...) (see runs.schemas.usable_config); notes say what
    was left out."""
    spec, notes, training = keras_import.import_keras_source(code)
    return {"spec": spec, "summary": validate(spec=spec), "training": training, "notes": notes}


def get(*, db_session: Session, architecture_id: int) -> Architecture:
    architecture = db_session.get(Architecture, architecture_id)
    if architecture is None:
        raise NotFound(f"architecture {architecture_id} does not exist")
    return architecture


def list_(*, db_session: Session, offset: int = 0, limit: int = 100) -> tuple[list[Architecture], int]:
    total = db_session.scalar(select(func.count(Architecture.id))) or 0
    rows = db_session.scalars(
        select(Architecture).order_by(Architecture.updated_at.desc(), Architecture.id.desc())
        .offset(offset).limit(limit)
    ).all()
    return list(rows), total


def create(*, db_session: Session, architecture_in: ArchitectureCreate) -> Architecture:
    """Validate and save; a spec that does not validate is never stored."""
    checked = validate(spec=architecture_in.spec)
    architecture = Architecture(
        name=architecture_in.name.strip(),
        description=architecture_in.description,
        spec=architecture_in.spec,
        training=stored_training(architecture_in.training),
        total_params=checked.total_params,
        trainable_params=checked.trainable_params,
    )
    db_session.add(architecture)
    _commit_unique_name(db_session, architecture.name)
    return architecture


def update(*, db_session: Session, architecture_id: int, architecture_in: ArchitectureUpdate) -> Architecture:
    architecture = get(db_session=db_session, architecture_id=architecture_id)
    if architecture_in.spec is not None:
        checked = validate(spec=architecture_in.spec)
        architecture.spec = architecture_in.spec
        architecture.total_params = checked.total_params
        architecture.trainable_params = checked.trainable_params
    if architecture_in.training is not None:
        architecture.training = stored_training(architecture_in.training)
    if architecture_in.name is not None:
        architecture.name = architecture_in.name.strip()
    if architecture_in.description is not None:
        architecture.description = architecture_in.description
    _commit_unique_name(db_session, architecture.name)
    return architecture


def delete(*, db_session: Session, architecture_id: int) -> None:
    architecture = get(db_session=db_session, architecture_id=architecture_id)
    db_session.delete(architecture)
    db_session.commit()


def pytorch_source(*, db_session: Session, architecture_id: int) -> str:
    architecture = get(db_session=db_session, architecture_id=architecture_id)
    return codegen.to_pytorch_source(architecture.spec, class_name=_class_name(architecture.name))


def _class_name(name: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in name).split()
    candidate = "".join(word[:1].upper() + word[1:] for word in words)
    return candidate if candidate[:1].isalpha() else "Model"


def _commit_unique_name(db_session: Session, name: str) -> None:
    try:
        db_session.commit()
    except IntegrityError as exc:
        db_session.rollback()
        raise Conflict(
            f"an architecture named '{name}' already exists: choose another name",
            [{"field": "name", "message": "name already taken"}],
        ) from exc
