"""The architecture spec: a list of layers (the kinds in `app.layers.registry`), and `parse_spec`.

Torch-free on purpose: the web process validates specs without importing torch.

Numbering: `SpecError.details[i]["index"]` is the 0-based position of the layer in
`spec["layers"]` (for programs); human messages say "layer N" with N = index + 1, which is
how the UI numbers layers. Problems that belong to no layer carry `"index": None`.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.config import get_settings
from app.core.errors import InvalidInput
from app.layers.base import LayerSpec, PositiveInt, form_kind_of
from app.layers.registry import LAYER_TYPES, Layer

# LAYER_TYPES and Layer come from the registry: they are part of this module's public names.
__all__ = ["LAYER_TYPES", "ArchitectureSpec", "Layer", "SpecError", "layer_label", "parse_spec", "problem"]


class SpecError(InvalidInput):
    """A spec a person must fix. details: [{"index", "type", "field", "message"}] (index 0-based)."""

    def __init__(self, details: list[dict[str, Any]]):
        messages = [d["message"] for d in details]
        summary = messages[0] if len(messages) == 1 else f"{len(messages)} problems: " + "; ".join(messages)
        super().__init__(summary, details)


def layer_label(index: int | None, layer_type: str | None) -> str:
    """'layer 3 (Dense)' for the 0-based index 2: how messages name a layer."""
    if index is None:
        return "the model"
    return f"layer {index + 1} ({layer_type})" if layer_type else f"layer {index + 1}"


def problem(index: int | None, layer_type: str | None, field: str | None, message: str) -> dict[str, Any]:
    """One entry of SpecError.details."""
    return {"index": index, "type": layer_type, "field": field, "message": message}


class ArchitectureSpec(BaseModel):
    """A sequential model: channels-first `input_shape` (without the batch axis) and its layers."""

    model_config = ConfigDict(extra="forbid")

    input_shape: list[PositiveInt] | None = None
    layers: list[Layer]


def parse_spec(data: Any) -> ArchitectureSpec:
    """Validate a plain spec (JSON-like) into an ArchitectureSpec; SpecError lists every problem."""
    if isinstance(data, ArchitectureSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError([problem(None, None, None, (
            f"the spec must be an object like {{\"input_shape\": [1, 28, 28], \"layers\": [...]}}, "
            f"got {type(data).__name__}"
        ))])
    problems: list[dict[str, Any]] = []
    for key in data:
        if key not in ("input_shape", "layers"):
            problems.append(problem(None, None, str(key), _unknown_field_message(
                "the spec has no field", str(key), ["input_shape", "layers"])))

    input_shape = data.get("input_shape")
    if input_shape is not None and not (
        isinstance(input_shape, (list, tuple)) and input_shape
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)
    ):
        problems.append(problem(None, None, "input_shape", (
            f"input_shape must be a list of positive whole numbers, channels first, e.g. [1, 28, 28]; "
            f"got {input_shape!r}"
        )))

    raw_layers = data.get("layers")
    layers: list[LayerSpec] = []
    if raw_layers is None:
        problems.append(problem(None, None, "layers", "the spec has no 'layers' list: add at least one layer"))
    elif not isinstance(raw_layers, list):
        problems.append(problem(None, None, "layers", f"'layers' must be a list, got {type(raw_layers).__name__}"))
    elif not raw_layers:
        problems.append(problem(None, None, "layers", "the model has no layers: add at least one layer"))
    elif len(raw_layers) > (max_layers := get_settings().max_layers):
        # Refused before any layer is read: validating (and later training) scales with the count.
        problems.append(problem(None, None, "layers", (
            f"the model has {len(raw_layers)} layers: at most {max_layers} layers (TRAINBOARD_MAX_LAYERS)")))
    else:
        for index, raw in enumerate(raw_layers):
            parsed = _parse_layer(index, raw, problems)
            if parsed is not None:
                layers.append(parsed)

    if problems:
        raise SpecError(problems)
    return ArchitectureSpec.model_construct(input_shape=list(input_shape) if input_shape else None, layers=layers)


def _parse_layer(index: int, raw: Any, problems: list[dict[str, Any]]) -> LayerSpec | None:
    label = layer_label(index, None)
    if not isinstance(raw, dict):
        problems.append(problem(index, None, None, (
            f"{label} must be an object like {{\"type\": \"Dense\", \"units\": 10}}, got {raw!r}")))
        return None
    layer_type = raw.get("type")
    if not isinstance(layer_type, str) or not layer_type:
        problems.append(problem(index, None, "type", f"{label} has no 'type': say which layer it is, e.g. \"Dense\""))
        return None
    cls = LAYER_TYPES.get(layer_type)
    if cls is None:
        problems.append(problem(index, layer_type, "type", (
            f"{label}: unknown layer type '{layer_type}'"
            + _suggest_or_list(layer_type, list(LAYER_TYPES), "supported"))))
        return None
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        label = layer_label(index, layer_type)
        seen: set[str] = set()
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else None
            if field in seen:  # a union reports one error per branch; one message per field is enough
                continue
            seen.add(field or "")
            problems.append(problem(index, layer_type, field, f"{label}: {_explain(cls, error)}"))
        return None


def _explain(cls: type[LayerSpec], error: dict[str, Any]) -> str:
    """Turn one pydantic error into words a person can act on."""
    field = str(error["loc"][0]) if error["loc"] else "value"
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = [name for name in cls.model_fields if name != "type"]
        return _unknown_field_message("no field", field, allowed)
    if kind == "missing":
        return f"'{field}' is required" + _example(cls, field)
    if kind == "literal_error":
        choices = _literal_choices(ctx.get("expected", ""))
        return f"unknown {field} {value!r}" + _suggest_or_list(str(value), choices, "choose one of")
    if kind in ("greater_than", "greater_than_equal"):
        bound = ctx.get("gt", ctx.get("ge"))
        if bound == 0 and kind == "greater_than" and isinstance(value, int):
            return f"'{field}' must be a positive whole number, got {value}"
        return f"'{field}' must be {'>' if kind == 'greater_than' else '>='} {bound}, got {value!r}"
    if kind in ("less_than", "less_than_equal"):
        bound = ctx.get("lt", ctx.get("le"))
        if field == "rate":
            return f"'rate' is the fraction of units dropped and must be below 1 (e.g. 0.2), got {value!r}"
        return f"'{field}' must be {'<' if kind == 'less_than' else '<='} {bound}, got {value!r}"
    if kind == "value_error":
        return f"'{field}': {error['msg'].removeprefix('Value error, ')}"
    if field in cls.model_fields and form_kind_of(cls.model_fields[field])[0] == "pair":
        return f"'{field}' must be a positive whole number or a pair [height, width], got {value!r}"
    return f"'{field}': {error['msg'].lower()}, got {value!r}"


def _example(cls: type[LayerSpec], field: str) -> str:
    examples = cls.model_fields[field].examples if field in cls.model_fields else None
    return f", e.g. \"{field}\": {json.dumps(examples[0])}" if examples else ""


def _literal_choices(expected: str) -> list[str]:
    # pydantic's ctx["expected"] reads "'relu', 'tanh' or 'linear'"
    return [part.strip(" '\"") for part in expected.replace(" or ", ", ").split(",") if part.strip(" '\"")]


def _suggest(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        match = [lowered[word.lower()]] if word.lower() in lowered else []
    return f"; did you mean '{match[0]}'?" if match else ""


def _suggest_or_list(word: str, choices: list[str], intro: str) -> str:
    """"; did you mean 'relu'?" when a choice is close, else "; <intro> a, b, c"."""
    return _suggest(word, choices) or f"; {intro} {', '.join(choices) if choices else 'none'}"


def _unknown_field_message(owner: str, field: str, allowed: list[str]) -> str:
    return f"{owner} '{field}'" + _suggest_or_list(field, allowed, "known fields:")
