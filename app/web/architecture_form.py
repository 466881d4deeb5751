"""The builder's form ↔ an architecture spec, its edit actions, and the check that feeds the page.

The builder keeps no state in the browser: every change posts the whole form
(`name`, `description`, `input_shape`, `layers-N-type`, `layers-N-<field>`, `keras_code`),
`from_form` turns it back into an `Editor`, an optional action (add, remove, up, down)
edits the layer list, and `check` validates through the architectures service. Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticUndefined
from starlette.datastructures import FormData

from app.architectures import service as architectures_service
from app.architectures.summary import LayerSummary, Summary
from app.core.errors import Conflict, DomainError
from app.layers.base import FormField, FormKind, as_text
from app.layers.registry import FORMS, LAYER_TYPES
from app.runs.schemas import usable_config

# The builder's layer menu and each layer's fields, in menu order (from the layer registry).
LAYER_FORMS: dict[str, tuple[FormField, ...]] = FORMS
_LAYER_KEY = re.compile(r"^layers-(\d{1,6})-type$")
_NUMBER_SPLIT = re.compile(r"[\s,x×()\[\]]+")


def model_default(layer_type: str, name: str) -> Any:
    """The spec's default for a field, or PydanticUndefined when the field is required."""
    model = LAYER_TYPES.get(layer_type)
    info = model.model_fields.get(name) if model else None
    return info.default if info is not None else PydanticUndefined


@dataclass
class EditorLayer:
    """One layer as the form holds it: the type and each field's text (booleans as bools)."""

    type: str
    values: dict[str, str | bool] = field(default_factory=dict)

    @classmethod
    def new(cls, layer_type: str) -> EditorLayer:
        return cls(layer_type, {f.name: f.initial for f in LAYER_FORMS.get(layer_type, ())})

    @property
    def fields(self) -> tuple[FormField, ...]:
        return LAYER_FORMS.get(self.type, ())

    def to_spec(self) -> dict[str, Any]:
        """Form text → spec values; text that is no number stays text so the spec check names it."""
        layer: dict[str, Any] = {"type": self.type}
        for form_field in self.fields:
            value = _to_value(form_field.kind, self.values.get(form_field.name, form_field.initial))
            default = model_default(self.type, form_field.name)
            if value is None or (default is not PydanticUndefined and value == default):
                continue  # leave defaults out: saved specs stay as short as the tutorial's
            layer[form_field.name] = value
        return layer


@dataclass
class Editor:
    """Everything the builder form holds."""

    name: str = ""
    description: str = ""
    input_shape: str = ""
    layers: list[EditorLayer] = field(default_factory=list)
    keras_code: str = ""
    add_type: str = "Dense"

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, name: str = "", description: str = "") -> Editor:
        """A saved, preset or imported spec → the form that shows it."""
        layers = []
        for raw in spec.get("layers") or []:
            layer_type = str(raw.get("type", ""))
            values: dict[str, str | bool] = {}
            for form_field in LAYER_FORMS.get(layer_type, ()):
                value = raw.get(form_field.name, model_default(layer_type, form_field.name))
                values[form_field.name] = as_text(form_field.kind, value)
            layers.append(EditorLayer(layer_type, values))
        shape = spec.get("input_shape")
        return cls(name=name, description=description, input_shape=as_text("shape", shape), layers=layers)

    @classmethod
    def from_form(cls, form: FormData) -> Editor:
        """The posted builder form → an Editor (fields a layer type lacks start at their initial value)."""
        indexes = sorted(int(m.group(1)) for key in form if (m := _LAYER_KEY.match(key)))
        layers = []
        for index in indexes:
            layer_type = str(form.get(f"layers-{index}-type", ""))
            values: dict[str, str | bool] = {}
            for form_field in LAYER_FORMS.get(layer_type, ()):
                posted = form.getlist(f"layers-{index}-{form_field.name}")
                if not posted:
                    values[form_field.name] = form_field.initial
                elif form_field.kind == "bool":
                    # A hidden "0" precedes each checkbox, so a posted but unticked box reads False.
                    values[form_field.name] = posted[-1] == "1"
                else:
                    values[form_field.name] = str(posted[-1]).strip()
            layers.append(EditorLayer(layer_type, values))
        add_type = str(form.get("add_type", "Dense"))
        return cls(
            name=str(form.get("name", "")).strip(),
            description=str(form.get("description", "")).strip(),
            input_shape=str(form.get("input_shape", "")).strip(),
            layers=layers,
            keras_code=str(form.get("keras_code", "")),
            add_type=add_type if add_type in LAYER_FORMS else "Dense",
        )

    def apply(self, action: str) -> None:
        """Edit the layer list: 'add', 'remove:N', 'up:N', 'down:N' (N 0-based); anything else is a no-op."""
        verb, _, argument = action.partition(":")
        if verb == "add":
            self.layers.append(EditorLayer.new(self.add_type))
            return
        if not argument.isdigit() or len(argument) > 6 or int(argument) >= len(self.layers):
            return
        index = int(argument)
        if verb == "remove":
            del self.layers[index]
        elif verb == "up" and index > 0:
            self.layers[index - 1], self.layers[index] = self.layers[index], self.layers[index - 1]
        elif verb == "down" and index < len(self.layers) - 1:
            self.layers[index + 1], self.layers[index] = self.layers[index], self.layers[index + 1]

    def parsed_input_shape(self) -> list[int] | None:
        """'1, 28, 28', '(1,28,28)' or '1x28x28' → [1, 28, 28]; blank → None; ValueError when unreadable."""
        numbers = [part for part in _NUMBER_SPLIT.split(self.input_shape) if part]
        return [int(part) for part in numbers] if numbers else None

    def spec(self) -> dict[str, Any]:
        """The spec the form describes (an unreadable input shape is left out; `check` reports it)."""
        try:
            shape = self.parsed_input_shape()
        except ValueError:
            shape = None
        return {"input_shape": shape, "layers": [layer.to_spec() for layer in self.layers]}


@dataclass
class LayerView:
    """One layer as the page shows it: its form, its inferred shape and cost, and what is wrong with it."""

    index: int
    layer: EditorLayer
    summary: LayerSummary | None = None
    errors: list[str] = field(default_factory=list)
    error_fields: set[str] = field(default_factory=set)


@dataclass
class Check:
    """What the page shows next to the form: totals, per-layer rows and errors, by where they belong."""

    layers: list[LayerView]
    summary: Summary | None = None
    input_errors: list[str] = field(default_factory=list)
    name_errors: list[str] = field(default_factory=list)
    import_errors: list[str] = field(default_factory=list)
    model_errors: list[str] = field(default_factory=list)
    notice: str = ""
    notice_link: tuple[str, str] | None = None  # (href, text) after the notice

    @property
    def has_errors(self) -> bool:
        return bool(self.input_errors or self.name_errors or self.model_errors
                    or any(view.errors for view in self.layers))

    def add_error(self, exc: DomainError | ValidationError) -> None:
        """File each detail of a domain or schema error next to the field or layer that caused it."""
        if isinstance(exc, ValidationError):  # ArchitectureCreate/Update refused the name or description
            for error in exc.errors():
                field_name = str(error["loc"][0]) if error["loc"] else "form"
                message = f"{field_name}: {error['msg'].lower()}"
                (self.name_errors if field_name == "name" else self.model_errors).append(message)
            return
        if isinstance(exc, Conflict):
            self.name_errors.append(exc.message)
            return
        details = exc.details or [{"index": None, "field": None, "message": exc.message}]
        for detail in details:
            index, field_name = detail.get("index"), detail.get("field")
            if isinstance(index, int) and 0 <= index < len(self.layers):
                self.layers[index].errors.append(detail["message"])
                if field_name:
                    self.layers[index].error_fields.add(field_name)
            elif field_name == "input_shape":
                self.input_errors.append(detail["message"])
            elif field_name == "name":
                self.name_errors.append(detail["message"])
            else:
                self.model_errors.append(detail["message"])


INPUT_SHAPE_HELP = ("write the input shape as whole numbers separated by commas, channels first: "
                    "1, 28, 28 for MNIST, 3, 32, 32 for CIFAR-10, 784 for flat vectors")


def check(editor: Editor) -> Check:
    """Validate the form's spec; on errors, still show shapes for the layers before the first bad one."""
    result = Check(layers=[LayerView(index, layer) for index, layer in enumerate(editor.layers)])
    try:
        editor.parsed_input_shape()
    except ValueError:
        result.input_errors.append(f"cannot read '{editor.input_shape}': {INPUT_SHAPE_HELP}")
        return result
    if not editor.layers:
        return result  # an empty builder is a starting point, not a mistake
    spec = editor.spec()
    try:
        result.summary = architectures_service.validate(spec=spec)
    except DomainError as exc:
        result.add_error(exc)
        _show_shapes_before_first_error(result, spec)
    else:
        for view, layer_summary in zip(result.layers, result.summary.layers, strict=True):
            view.summary = layer_summary
    return result


def _show_shapes_before_first_error(result: Check, spec: dict[str, Any]) -> None:
    bad = [view.index for view in result.layers if view.errors]
    if not bad or bad[0] == 0 or result.input_errors:
        return
    try:
        prefix = architectures_service.validate(spec={**spec, "layers": spec["layers"][: bad[0]]})
    except DomainError:
        return
    for view, layer_summary in zip(result.layers, prefix.layers, strict=False):
        view.summary = layer_summary


def training_summary(training: dict[str, Any]) -> str:
    """compile/fit settings in a line: 'adam lr 0.001 · cross_entropy · 5 epochs · batch 64'."""
    parts = []
    if optimizer := training.get("optimizer"):
        parts.append(optimizer.get("name", "adam") + (f" lr {optimizer['lr']}" if "lr" in optimizer else ""))
    if loss := training.get("loss"):
        parts.append(loss.replace("_", " "))
    for key, label in (("epochs", "{} epochs"), ("batch_size", "batch {}"), ("val_split", "validation split {}")):
        if key in training:
            parts.append(label.format(training[key]))
    if early := training.get("early_stopping"):
        parts.append(f"early stopping on {early['monitor']} (patience {early['patience']})")
    return " · ".join(parts)


def import_keras(editor: Editor) -> tuple[Editor, list[str], dict[str, Any]]:
    """Replace the form's model with the pasted Keras code's; on errors keep the form and list them.
    Also returns the (valid) run settings read from the code's compile/fit calls."""
    if not editor.keras_code.strip():
        return editor, ["paste Keras code that builds a Sequential model, then press Import"], {}
    try:
        imported_source = architectures_service.import_keras_source(code=editor.keras_code)
    except DomainError as exc:
        messages = [d.get("message", exc.message) for d in exc.details] or [exc.message]
        if messages[0].startswith("no input shape"):
            # The service checks the code on its own; the builder's input field does not count here.
            messages = ["the code gives no input shape: add one to its first layer, e.g. "
                        "Flatten(input_shape=(28, 28)) or Conv2D(32, 3, input_shape=(32, 32, 3))"]
        return editor, messages, {}
    imported = Editor.from_spec(imported_source["spec"], name=editor.name, description=editor.description)
    imported.keras_code, imported.add_type = editor.keras_code, editor.add_type
    return imported, [], usable_config(imported_source["training"], [])


def _to_value(kind: FormKind, text: str | bool) -> Any:
    if kind == "bool":
        return bool(text)
    text = str(text).strip()
    if not text:
        return None
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind in ("pair", "shape"):
            numbers = [int(part) for part in _NUMBER_SPLIT.split(text) if part]
            if kind == "pair" and len(numbers) == 1:
                return numbers[0]
            return numbers
    except ValueError:
        return text  # the spec check turns it into a message that names the field
    return text
