"""The registry is the one definition of the layer vocabulary: every consumer reads the same kinds."""

from __future__ import annotations

import pytest

from app.architectures.spec import ArchitectureSpec, parse_spec
from app.layers import registry
from app.layers.activations import ACTIVATIONS
from app.web.architecture_form import LAYER_FORMS, EditorLayer
from app.web.pages import curve_svg


def test_every_kind_is_listed_once_and_named_after_its_type():
    assert len(registry.KINDS) == len(registry.LAYER_TYPES) > 10
    for name, kind in registry.LAYER_TYPES.items():
        assert kind.model_fields["type"].default == name
        assert kind.family, name
    assert sorted(registry.MENU) == sorted(registry.LAYER_TYPES)
    assert list(LAYER_FORMS) == list(registry.MENU)


@pytest.mark.parametrize("name", list(registry.LAYER_TYPES))
def test_a_freshly_added_layer_is_a_valid_spec_layer(name):
    """The form's starting values are the kind's examples and defaults: they must parse as they are."""
    layer = EditorLayer.new(name).to_spec()
    assert layer["type"] == name
    parsed = parse_spec({"layers": [layer]}).layers[0]
    assert type(parsed) is registry.LAYER_TYPES[name]
    assert {f.name for f in LAYER_FORMS[name]} == set(type(parsed).model_fields) - {"type"}


@pytest.mark.parametrize("name", [kind.__name__ for kind in registry.KINDS if kind.keras is not None])
def test_keras_spelling_names_only_real_arguments(name):
    kind = registry.LAYER_TYPES[name]
    spelling = kind.keras
    fields = set(kind.model_fields)
    known = fields | set(spelling.fixed) | spelling.ignored | {"activation", "use_bias", "recurrent_activation"}
    assert set(spelling.positional) <= known, set(spelling.positional) - known
    assert registry.KERAS[spelling.name] == (kind, None)
    for alias in spelling.aliases:
        assert registry.KERAS[alias] == (kind, None)
    for shortcut, preset in spelling.shortcuts.items():
        assert registry.KERAS[shortcut] == (kind, preset)
        kind.model_validate({"type": name, **preset})


def test_the_json_schema_offers_every_kind():
    schema = ArchitectureSpec.model_json_schema()
    assert set(registry.LAYER_TYPES) <= set(schema["$defs"])
    dense = schema["$defs"]["Dense"]["properties"]
    assert dense["units"]["exclusiveMinimum"] == 0 and dense["units"]["examples"] == [64]


def test_the_explainer_plots_every_activation_the_builder_offers():
    dense_choices = next(f.choices for f in LAYER_FORMS["Dense"] if f.name == "activation")
    assert dense_choices == tuple(ACTIVATIONS)
    for info in ACTIVATIONS.values():
        assert f'aria-label="plot of {info.name}"' in curve_svg(info)
