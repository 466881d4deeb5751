"""What a layer kind is made of, and the shape arithmetic the kinds share.

A layer kind is one pydantic model (`LayerSpec` subclass): its fields are its typed parameters with
defaults and limits (what the spec accepts, and what the builder's form shows), and its methods say
how it changes a shape and what it costs (`infer`), how it reads in a table (`describe`), how it
becomes a torch module (`build`, importing torch only when called) and PyTorch source (`emit`), and
how Keras spells it (`keras`, `from_keras`). Nothing here imports torch.

Shapes are channels-first and leave out the batch axis: (C, H, W) images, (T, F) sequences, (F,) vectors.
Parameter counts are what PyTorch's `module.parameters()` reports for the built module; FLOPs are per
sample, 2 x multiply-accumulates of matrix products and convolutions (as `torch.utils.flop_counter`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from app.layers.activations import OUTPUT_ACTIVATIONS

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
# Strict: `true` or "128" for a size is a mistake worth reporting, not coercing.
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
IntOrPair = Union[PositiveInt, tuple[PositiveInt, PositiveInt]]
Padding = Literal["valid", "same"]
FormKind = Literal["int", "float", "pair", "shape", "choice", "bool", "text"]


def param(default: Any = PydanticUndefined, *, label: str | None = None, example: Any = PydanticUndefined,
          hint: str = "", **limits: Any) -> Any:
    """A layer parameter: its default and limits, its label and hint in the builder, and an example value
    (what a freshly added layer starts with, and what a 'required' message suggests)."""
    examples = None if example is PydanticUndefined else [example]
    return Field(default, title=label, description=hint or None, examples=examples, **limits)


@dataclass(frozen=True)
class FormField:
    """One input of a layer's form: how it is shown and how its text becomes a spec value."""

    name: str
    label: str
    kind: FormKind
    initial: str | bool = ""  # what a freshly added layer starts with, as the form shows it
    choices: tuple[str, ...] = ()
    hint: str = ""


@dataclass(frozen=True)
class Keras:
    """How Keras spells a layer kind.

    positional: Keras's positional parameters in order; fixed: arguments accepted only at their Keras
    default (then dropped); ignored: arguments that change no shape or parameter count (dropped with a
    note); shortcuts: other Keras classes that are this kind with set arguments (ReLU() is
    Activation("relu")).
    """

    name: str
    positional: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    fixed: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    shortcuts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


CHANNELS_LAST = {"data_format": ("channels_last", None)}


class KerasUnsupported(ValueError):
    """Keras arguments a kind cannot take; the importer adds the line."""


class BuildError(Exception):
    """A module that cannot be built (missing weights file...); the engine reports it as its own error."""


@dataclass
class Out:
    """What `infer` finds: the output shape, parameters (trainable: None = all), FLOPs per sample."""

    shape: Shape
    params: int = 0
    trainable: int | None = None
    flops: int = 0


class ShapeProblem(Exception):
    """A layer that cannot take its input. `recover` lets inference go on to find more problems."""

    def __init__(self, message: str, field: str | None = None, recover: Shape | None = None):
        super().__init__(message)
        self.message, self.field, self.recover = message, field, recover


@dataclass(frozen=True)
class BuildContext:
    """What building a module needs besides the layer and its input shape."""

    activation: str  # the activation to apply: "linear" when the engine applies the final one itself
    weights_root: Path | None = None  # where "file:" weights live (the data directory)


class SourceWriter(Protocol):
    """What `emit` writes into: `__init__` lines, `forward` lines, and attribute names."""

    init: list[str]
    forward: list[str]
    frozen: list[str]
    uses_torchvision: bool

    def name(self, prefix: str) -> str: ...

    def assign(self, expression: str, act: str, dim: int = -1) -> None: ...


class LayerSpec(BaseModel):
    """One layer kind; subclasses set `type` to a Literal of their class name."""

    # Unknown fields are almost always typos ("unit", "activaton"): reject them with a hint.
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    family: ClassVar[str]  # the diagram's colour class: dense, conv, pool, shape, reg, rnn, embed, pretrained
    source_prefix: ClassVar[str] = ""  # attribute names in generated source: dense1, conv2...
    keras: ClassVar[Keras | None] = None
    # The `activation` field is applied to the output (a final softmax/sigmoid is left to the loss).
    applies_activation: ClassVar[bool] = False
    token_input: ClassVar[bool] = False  # takes integer token ids (the model's input is int64)
    # Keras import: a 2-D Keras input shape before this first layer is a one-channel image, not (T, F).
    reads_2d_as_image: ClassVar[bool] = False

    def infer(self, shape: Shape, index: int) -> Out:
        """The output shape and cost for `shape`; ShapeProblem when the layer cannot take it."""
        return Out(shape)

    def describe(self) -> str:
        """A short label for diagrams and tables, e.g. 'Dense 128, relu'."""
        return self.type

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        """The torch module for an input of `shape` (without the batch axis)."""
        raise NotImplementedError

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        """Write the layer's `__init__` and `forward` lines; `act` is the activation to apply."""
        raise NotImplementedError

    @classmethod
    def from_keras(cls, args: dict[str, Any]) -> dict[str, Any]:
        """Keras arguments (named, after `keras.positional`) → spec fields; KerasUnsupported when impossible."""
        return args

    def output_activation(self) -> str | None:
        """The final softmax/sigmoid that the built module leaves to the engine when this layer ends a model."""
        activation = getattr(self, "activation", None)
        return activation if self.applies_activation and activation in OUTPUT_ACTIVATIONS else None

    def activation_text(self) -> str:
        """', relu' for describe(); nothing for linear and tanh (the recurrent default)."""
        activation = getattr(self, "activation", "linear")
        return f", {activation}" if activation not in ("linear", "tanh") else ""


def form_fields(kind: type[LayerSpec]) -> tuple[FormField, ...]:
    """The builder's inputs for a kind, in field order, from the fields' types, defaults and examples."""
    fields = []
    for name, info in kind.model_fields.items():
        if name == "type":
            continue
        form_kind, choices = form_kind_of(info)
        initial = info.examples[0] if info.examples else info.default
        label = info.title or name.replace("_", " ").capitalize()
        fields.append(FormField(name, label, form_kind, as_text(form_kind, initial), choices, info.description or ""))
    return tuple(fields)


def form_kind_of(info: FieldInfo) -> tuple[FormKind, tuple[str, ...]]:
    """How the form edits a field: a number, a pair (3 or 3, 5), a shape, a choice, a box or text."""
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if any(get_origin(arg) is tuple for arg in options):
            return "pair", ()
        annotation = options[0]
    if get_origin(annotation) is Literal:
        return "choice", tuple(str(value) for value in get_args(annotation))
    if get_origin(annotation) is list:
        return "shape", ()
    simple: dict[Any, FormKind] = {bool: "bool", int: "int", float: "float"}
    return simple.get(annotation, "text"), ()


def as_text(kind: FormKind, value: Any) -> str | bool:
    """A spec value as the form shows it: '3, 5' for pairs and shapes, '0.001' for floats."""
    if kind == "bool":
        return bool(value)
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if kind == "float" and isinstance(value, float):
        return f"{value:g}"
    return str(value)
