"""The launch form ↔ one `RunCreate`, and every error mapped to the field that caused it.

Inputs are named by their path in the JSON body (`config.epochs`, `config.optimizer.lr`,
`config.optimizer.betas.0`, ...): `schemas.nest` turns them into the body the API takes and the same
`RunCreate` validates it, so the form says what the API says, next to the input whose name is the
error's `loc` (or the service error's `details[].field`). Initial values, choices and min/max come
from the schema. Settings that do not apply (momentum for Adam, a step schedule's gamma when no
schedule is chosen) are ignored rather than rejected: the page hides them, but a browser still posts
what a person typed before switching. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import annotated_types
from pydantic import ValidationError
from starlette.datastructures import FormData

from app.core.errors import DomainError
from app.runs.schemas import (
    OPTIMIZER_SETTINGS,
    OPTIONAL_SECTIONS,
    SCHEDULE_SETTINGS,
    RunCreate,
    TrainConfigIn,
    error_message,
    nest,
    setting_choices,
    setting_fields,
    setting_kinds,
)

SETTINGS = setting_fields()
DEVICES = ("auto", "cpu", "cuda", "mps")  # the device list offers these; cuda:N is typed by API clients
# Specs offered in the model list next to saved architectures and presets (no input shape: it
# comes from the data set).
QUICK_SPECS = {
    "digits-mlp": ("Small MLP (Flatten → Dense 32 relu → Dense 10 softmax)", {"layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}),
}
# The model choice for the data set's default model (presets.default_spec): a run body with no model.
DEFAULT_MODEL = "default"
# What each optimizer and schedule reads, by its name; the section's other settings (name, lr) always apply.
APPLIES = {"config.optimizer": OPTIMIZER_SETTINGS, "config.schedule": SCHEDULE_SETTINGS}


def field_text(value: Any) -> str:
    """A value as a form field holds it (checkboxes: '1' / '0'; 0.0 as '0')."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# What a fresh form shows: the schema's defaults (optional sections switched off).
DEFAULTS = {path: field_text(info.default) for path, info in SETTINGS.items()
            if not info.is_required() and info.default is not None}


@dataclass
class RunForm:
    """The posted values (as typed) and the errors per field path ('' for the form as a whole)."""

    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    errors: dict[str, list[str]] = field(default_factory=dict)
    notice: str = ""  # where the starting values came from

    def value(self, path: str) -> str:
        return self.values.get(path, "")

    def checked(self, path: str) -> bool:
        return self.values.get(path, "") not in ("", "0")

    def add(self, path: str, message: str) -> None:
        slot = _slot(path)
        self.errors.setdefault(slot, []).append(message if slot or not path else f"{path}: {message}")

    def errors_for(self, path: str) -> list[str]:
        return self.errors.get(path, [])

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    @staticmethod
    def choices(path: str) -> tuple[str, ...]:
        """The options of a setting the schema lists (a Literal); a section one may leave out offers '' (none)."""
        return ("",) * SETTINGS[path].is_required() + setting_choices(SETTINGS[path])

    @staticmethod
    def limits(path: str) -> dict[str, Any]:
        """The `min`, `max` and `step` of a number input, from the setting's constraints."""
        info = SETTINGS.get(path)
        kinds = setting_kinds(info) if info else set()
        if not kinds & {int, float} or bool in kinds:
            return {}
        bounds = {"min": [m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)],
                  "max": [m.le for m in info.metadata if isinstance(m, annotated_types.Le)]}
        return {key: values[0] for key, values in bounds.items() if values} | {"step": 1 if int in kinds else "any"}


def from_form(form: FormData) -> RunForm:
    """Keep what was typed; checkboxes post '1' when ticked (a hidden '0' goes first)."""
    values = {key: str(form.getlist(key)[-1]).strip() for key in form}
    return RunForm(values=values)


def prefilled(*, model: str = "", dataset: str = "", settings: dict[str, str] | None = None,
              notice: str = "") -> RunForm:
    """A fresh form, optionally with the model (`architecture:3`, `preset:mnist-mlp`, `default`) chosen and
    `config.*` fields filled in (e.g. the settings saved with the architecture)."""
    result = RunForm(notice=notice)
    result.values.update({"model": model, "dataset": dataset, **(settings or {})})
    return result


def config_query(params: Mapping[str, str]) -> dict[str, str]:
    """The `config.*` fields of a query string (a link carrying settings for the launch form)."""
    return {key: value for key, value in params.items() if key.startswith("config.")}


def config_fields(config: Mapping[str, Any], prefix: str = "config") -> dict[str, str]:
    """A run `config` (as POST /api/runs takes it) → the launch form's field values."""
    fields: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            fields.update({f"{path}.enabled": "1", **config_fields(value, path)})
        elif isinstance(value, (list, tuple)):
            fields.update({f"{path}.{i}": field_text(item) for i, item in enumerate(value)})
        elif value is not None:
            fields[path] = field_text(value)
    if prefix == "config" and "precision" not in config and config.get("mixed_precision") is False:
        fields["config.precision"] = "fp32"  # a config from before `precision` (the form has no mixed_precision)
    return fields


def to_run_create(run_form: RunForm) -> RunCreate | None:
    """Build the one `RunCreate` the JSON API also takes; None (and errors on the form) if it does not fit."""
    body: dict[str, Any] = {"name": run_form.value("name"), "config": _complete(nest(_applicable(run_form.values)))}
    kind, _, ref = run_form.value("model").partition(":")
    if kind == "architecture" and ref.isdigit() and len(ref) <= 20:  # RunCreate bounds the id
        body["architecture_id"] = int(ref)
    elif kind == "preset" and ref:
        body["preset"] = ref
    elif kind == "quick" and ref in QUICK_SPECS:
        body["spec"] = QUICK_SPECS[ref][1]
    elif kind != DEFAULT_MODEL:  # the default model: no model in the body
        run_form.add("model", "choose a model: the data set's default model, a saved architecture or a preset "
                              "(or build one in the builder)")
    if run_form.value("dataset"):
        body["dataset"] = run_form.value("dataset")
    try:
        run_in = RunCreate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            if not (path == "" and "model" in run_form.errors):  # "exactly one model" is already said there
                run_form.add(path, error_message(error))
        return None
    return None if run_form.has_errors else run_in


def _complete(config: dict[str, Any]) -> dict[str, Any]:
    """The form shows every setting, so a blank optional one (no schedule, early stopping switched off, no
    gradient clip) is given as none: the settings saved with an architecture fill in only what the API
    body leaves out, never what the form switched off."""
    optional = [name for name, info in TrainConfigIn.model_fields.items() if info.default is None]
    return {**dict.fromkeys(optional), **config}


def add_domain_error(run_form: RunForm, exc: DomainError) -> None:
    """A service error (422 details carry `field`), next to its field or, without one, over the form."""
    fields = [detail for detail in exc.details if detail.get("field")]
    if not fields:
        run_form.add("", exc.message)
    for detail in fields:
        run_form.add(detail["field"], exc.message)


def _applicable(values: Mapping[str, str]) -> dict[str, str]:
    """The posted values less the settings the chosen optimizer or schedule does not read."""
    kept = dict(values)
    for section, takes in APPLIES.items():
        name = values.get(f"{section}.name") or DEFAULTS.get(f"{section}.name", "")
        always = {path.rpartition(".")[2] for path in SETTINGS if path.startswith(section + ".")}
        always -= set().union(*takes.values())
        for path in values:
            key = path.removeprefix(section + ".").split(".")[0]
            if path.startswith(section + ".") and key not in always | takes.get(name, set()) | {"enabled"}:
                del kept[path]
    return kept


def _slot(path: str) -> str:
    """The input whose message slot shows an error about `path` ('' for none: the form's own slot)."""
    if path.split(".")[0] in ("spec", "architecture_id", "preset"):
        return "model"
    if f"{path}.name" in SETTINGS:  # the section as a whole: next to its choice
        return f"{path}.name"
    if path.removeprefix("config.") in OPTIONAL_SECTIONS:  # no choice: next to its switch
        return f"{path}.enabled"
    parent, _, last = path.rpartition(".")
    known = path in SETTINGS or path in ("name", "model", "dataset") or (parent in SETTINGS and last.isdigit())
    return path if known else ""
