"""The layer vocabulary, each kind once: the spec's models and JSON schema, the summary, the torch
build, the generated source, the Keras import table, the builder's form and the diagram all read it.

Adding a layer kind: write its `LayerSpec` subclass in the family module and list it in `KINDS`.
Torch-free at import (the web process reads it); torch is imported by `build` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Field

from app.layers import conv, dense, embedding, norm, pooling, pretrained, recurrent, shape
from app.layers.activations import ACTIVATIONS
from app.layers.base import FormField, LayerSpec, form_fields

# The order of messages ("supported: Dense, Conv2D, ...") and of the JSON schema.
KINDS: tuple[type[LayerSpec], ...] = (
    dense.Dense, conv.Conv2D, conv.Conv1D, pooling.MaxPooling2D, pooling.AveragePooling2D,
    pooling.GlobalAveragePooling2D, shape.Flatten, dense.Dropout, norm.BatchNormalization,
    norm.LayerNormalization, dense.Activation, recurrent.SimpleRNN, recurrent.LSTM, recurrent.GRU,
    embedding.Embedding, shape.Reshape, pretrained.Pretrained,
)
LAYER_TYPES: dict[str, type[LayerSpec]] = {kind.__name__: kind for kind in KINDS}
Layer = Annotated[Union[KINDS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007

# The builder's menu: what people reach for first comes first, then the order above.
MENU: tuple[str, ...] = ("Dense", "Flatten", *(name for name in LAYER_TYPES if name not in ("Dense", "Flatten")))
FORMS: dict[str, tuple[FormField, ...]] = {name: form_fields(LAYER_TYPES[name]) for name in MENU}

BACKBONES = pretrained.BACKBONES
APPLICATIONS = pretrained.APPLICATIONS  # keras.applications class → backbone
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def _keras_table() -> dict[str, tuple[type[LayerSpec], Mapping[str, Any] | None]]:
    table: dict[str, tuple[type[LayerSpec], Mapping[str, Any] | None]] = {}
    for kind in KINDS:
        if kind.keras is not None:
            for name in (kind.keras.name, *kind.keras.aliases):
                table[name] = (kind, None)
            table.update({name: (kind, preset) for name, preset in kind.keras.shortcuts.items()})
    return table


# Keras class name (or alias, or shortcut such as ReLU) → (kind, the arguments a shortcut sets).
KERAS: dict[str, tuple[type[LayerSpec], Mapping[str, Any] | None]] = _keras_table()
# What the importer lists as supported: the Keras classes, and the shortcuts (ReLU, Softmax...).
KERAS_CLASSES: tuple[str, ...] = tuple(kind.keras.name for kind in KINDS if kind.keras is not None)
KERAS_SHORTCUTS: tuple[str, ...] = tuple(
    name for kind in KINDS if kind.keras is not None for name in kind.keras.shortcuts)


def diagram_family(layer_type: str) -> str:
    """The diagram's colour class of a layer type ('input' for anything unknown)."""
    kind = LAYER_TYPES.get(layer_type)
    return kind.family if kind is not None else "input"


def read_layer(raw: Mapping[str, Any]) -> LayerSpec:
    """A layer dict that has already been validated → its kind's model, defaults filled in, without
    validating again (KeyError for an unknown type). The engine's own checks still run when it builds."""
    return LAYER_TYPES[raw["type"]].model_construct(**raw)


def output_activation(layers: list[LayerSpec]) -> str | None:
    """The final softmax/sigmoid that the built module leaves to the engine (it returns logits)."""
    return layers[-1].output_activation() if layers else None
