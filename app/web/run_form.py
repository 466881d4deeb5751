"""The launch form ↔ one `RunCreate`, and every error mapped to the field that caused it.

Inputs are named by their path in the JSON body (`config.epochs`, `config.optimizer.lr`,
`config.schedule.step_size`, ...), so an error from pydantic (`loc`) or from the runs service
(`details[].field`) lands next to the input of the same name. Settings that do not apply
(momentum for Adam, a step schedule's gamma when no schedule is chosen) are ignored rather than
rejected: the page hides them, but a browser still posts what a person typed before switching.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from app.core.errors import DomainError
from app.runs.schemas import OPTIMIZER_SETTINGS, RunCreate

OPTIMIZERS = tuple(OPTIMIZER_SETTINGS)
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy")
SCHEDULES = ("", "step", "cosine", "plateau")
MONITORS = ("val_loss", "val_accuracy")
DEVICES = ("auto", "cpu", "cuda", "mps")
NORMALIZATIONS = ("auto", "scale", "standardize")
# Specs offered in the model list next to saved architectures and presets (no input shape: it
# comes from the data set).
QUICK_SPECS = {
    "digits-mlp": ("Small MLP (Flatten → Dense 32 relu → Dense 10 softmax)", {"layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}),
}
SCHEDULE_SETTINGS = {
    "step": ("step_size", "gamma"),
    "cosine": ("t_max", "eta_min"),
    "plateau": ("monitor", "factor", "patience", "min_lr"),
}
INTS = {"config.epochs", "config.batch_size", "config.seed", "config.top_k", "config.max_train_samples",
        "config.keep_checkpoints",
        "config.schedule.step_size", "config.schedule.t_max", "config.schedule.patience",
        "config.early_stopping.patience"}
FLOATS = {"config.optimizer.lr", "config.optimizer.momentum", "config.optimizer.weight_decay",
          "config.optimizer.eps", "config.optimizer.alpha", "config.optimizer.beta1", "config.optimizer.beta2",
          "config.l2", "config.grad_clip", "config.val_split", "config.schedule.gamma",
          "config.schedule.eta_min", "config.schedule.factor", "config.schedule.min_lr",
          "config.early_stopping.min_delta"}
CHECKBOXES = ("config.mixed_precision", "config.channels_last", "config.optimizer.nesterov",
              "config.early_stopping.enabled", "config.early_stopping.restore_best")

# What a fresh form shows: the engine's defaults, a few made explicit so people see them.
DEFAULTS: dict[str, str] = {
    "config.epochs": "5", "config.batch_size": "32", "config.optimizer.name": "adam",
    "config.optimizer.lr": "0.001", "config.loss": "cross_entropy", "config.l2": "0", "config.seed": "0",
    "config.device": "auto", "config.val_split": "0.1", "config.normalize": "auto",
    "config.keep_checkpoints": "0", "config.top_k": "5",
    "config.mixed_precision": "1", "config.channels_last": "1",
    "config.schedule.step_size": "", "config.schedule.gamma": "", "config.early_stopping.monitor": "val_loss",
    "config.early_stopping.patience": "3", "config.early_stopping.min_delta": "0",
    "config.early_stopping.restore_best": "1",
}


@dataclass
class RunForm:
    """The posted values (as typed) and the errors per field path ('' for the form as a whole)."""

    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    errors: dict[str, list[str]] = field(default_factory=dict)

    def value(self, path: str) -> str:
        return self.values.get(path, "")

    def checked(self, path: str) -> bool:
        return self.values.get(path, "") not in ("", "0")

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(_slot(path), []).append(message)

    def errors_for(self, path: str) -> list[str]:
        return self.errors.get(path, [])

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)


def from_form(form: FormData) -> RunForm:
    """Keep what was typed; checkboxes post '1' when ticked (a hidden '0' goes first)."""
    values = {key: str(form.getlist(key)[-1]).strip() for key in form}
    return RunForm(values=values)


def prefilled(*, model: str = "", dataset: str = "", settings: dict[str, str] | None = None) -> RunForm:
    """A fresh form, optionally with the model (`architecture:3`, `preset:mnist-mlp`) chosen and
    `config.*` fields filled in (e.g. from a link that carries imported Keras settings)."""
    result = RunForm()
    result.values.update({"model": model, "dataset": dataset, **(settings or {})})
    return result


def config_query(params: Mapping[str, str]) -> dict[str, str]:
    """The `config.*` fields of a query string (a link carrying settings for the launch form)."""
    return {key: value for key, value in params.items() if key.startswith("config.")}


def config_fields(config: dict[str, Any]) -> dict[str, str]:
    """A run `config` (as POST /api/runs takes it) → the launch form's field values."""
    fields: dict[str, str] = {}
    for key in ("epochs", "batch_size", "val_split", "loss"):
        if key in config:
            fields[f"config.{key}"] = str(config[key])
    optimizer = dict(config.get("optimizer") or {})
    if betas := optimizer.pop("betas", None):
        fields["config.optimizer.beta1"], fields["config.optimizer.beta2"] = str(betas[0]), str(betas[1])
    for key, value in optimizer.items():
        fields[f"config.optimizer.{key}"] = _field_text(value)
    if early := config.get("early_stopping"):
        fields["config.early_stopping.enabled"] = "1"
        for key, value in early.items():
            fields[f"config.early_stopping.{key}"] = _field_text(value)
    return fields


def _field_text(value: Any) -> str:
    """A value as a form field holds it (checkboxes: '1' / '0')."""
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def to_run_create(run_form: RunForm) -> RunCreate | None:
    """Build the one `RunCreate` the JSON API also takes; None (and errors on the form) if it does not fit."""
    body = _body(run_form)  # inputs that are not numbers are left out (and marked), so the rest is checked too
    try:
        run_in = RunCreate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            if not (path == "" and "model" in run_form.errors):  # "exactly one model" is already said there
                run_form.add(path, _message(error))
        return None
    return None if run_form.has_errors else run_in


def add_domain_error(run_form: RunForm, exc: DomainError) -> None:
    """A service error (422 details carry `field`), next to its field or, without one, over the form."""
    fields = [detail for detail in exc.details if detail.get("field")]
    if not fields:
        run_form.add("", exc.message)
    for detail in fields:
        run_form.add(detail["field"], exc.message)


def _slot(path: str) -> str:
    """The input whose message slot shows an error about `path` (nested loc → the nearest input)."""
    if path.startswith("config.optimizer.betas"):
        return "config.optimizer.betas"
    if path in ("spec", "architecture_id", "preset") or path.startswith("spec."):
        return "model"
    if path == "config.optimizer":
        return "config.optimizer.name"
    if path == "config.schedule":
        return "config.schedule.name"
    if path == "config.early_stopping":
        return "config.early_stopping.enabled"
    return path


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _number(run_form: RunForm, path: str) -> int | float | None:
    raw = run_form.value(path)
    if raw == "":
        return None
    kind = int if path in INTS else float
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        run_form.add(path, f"“{raw}” is not {what}")
        return None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _body(run_form: RunForm) -> dict[str, Any]:
    body: dict[str, Any] = {"name": run_form.value("name")}
    model = run_form.value("model")
    kind, _, ref = model.partition(":")
    if kind == "architecture" and ref.isdigit() and len(ref) <= 20:  # RunCreate bounds the id
        body["architecture_id"] = int(ref)
    elif kind == "preset" and ref:
        body["preset"] = ref
    elif kind == "quick" and ref in QUICK_SPECS:
        body["spec"] = QUICK_SPECS[ref][1]
    else:
        run_form.add("model", "choose a saved architecture or a preset (or build one in the builder)")
    if run_form.value("dataset"):
        body["dataset"] = run_form.value("dataset")

    config: dict[str, Any] = {}
    for key in ("epochs", "batch_size", "l2", "grad_clip", "seed", "val_split", "top_k", "max_train_samples",
                "keep_checkpoints"):
        _put(config, key, _number(run_form, f"config.{key}"))
    for key in ("loss", "device", "normalize"):
        _put(config, key, run_form.value(f"config.{key}") or None)
    config["mixed_precision"] = run_form.checked("config.mixed_precision")
    config["channels_last"] = run_form.checked("config.channels_last")
    config["optimizer"] = _optimizer(run_form)
    config["schedule"] = _schedule(run_form)
    config["early_stopping"] = _early_stopping(run_form)
    body["config"] = config
    return body


def _optimizer(run_form: RunForm) -> dict[str, Any]:
    name = run_form.value("config.optimizer.name") or "adam"
    takes = OPTIMIZER_SETTINGS.get(name, set())
    optimizer: dict[str, Any] = {"name": name}
    _put(optimizer, "lr", _number(run_form, "config.optimizer.lr"))
    for key in ("momentum", "weight_decay", "eps", "alpha"):
        if key in takes:
            _put(optimizer, key, _number(run_form, f"config.optimizer.{key}"))
    if "nesterov" in takes and run_form.checked("config.optimizer.nesterov"):
        optimizer["nesterov"] = True
    if "betas" in takes:
        beta1, beta2 = _number(run_form, "config.optimizer.beta1"), _number(run_form, "config.optimizer.beta2")
        if beta1 is not None or beta2 is not None:
            optimizer["betas"] = [0.9 if beta1 is None else beta1, 0.999 if beta2 is None else beta2]
            if not all(0 <= b < 1 for b in optimizer["betas"]):
                run_form.add("config.optimizer.betas", "each beta must be at least 0 and below 1, e.g. 0.9 and 0.999")
    return optimizer


def _schedule(run_form: RunForm) -> dict[str, Any] | None:
    name = run_form.value("config.schedule.name")
    if not name:
        return None
    schedule: dict[str, Any] = {"name": name}
    for key in SCHEDULE_SETTINGS.get(name, ()):
        path = f"config.schedule.{key}"
        _put(schedule, key, run_form.value(path) or None if key == "monitor" else _number(run_form, path))
    if name == "step" and "step_size" not in schedule:
        run_form.add("config.schedule.step_size", "a step schedule needs a step size (epochs between decays)")
    return schedule


def _early_stopping(run_form: RunForm) -> dict[str, Any] | None:
    if not run_form.checked("config.early_stopping.enabled"):
        return None
    early: dict[str, Any] = {"restore_best": run_form.checked("config.early_stopping.restore_best")}
    _put(early, "monitor", run_form.value("config.early_stopping.monitor") or None)
    _put(early, "patience", _number(run_form, "config.early_stopping.patience"))
    _put(early, "min_delta", _number(run_form, "config.early_stopping.min_delta"))
    return early
