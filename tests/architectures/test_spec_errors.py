"""Invalid specs fail with layer-precise, actionable messages (index 0-based, 'layer N' 1-based)."""

from __future__ import annotations

import pytest

from app.architectures.spec import SpecError, parse_spec
from app.architectures.summary import summarize

MLP = [{"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"}, {"type": "Dense", "units": 10}]


def errors_of(spec, **caps) -> list[dict]:
    with pytest.raises(SpecError) as caught:
        summarize(spec, **caps)
    assert caught.value.status_code == 422
    return caught.value.details


def test_channels_last_input_shape_gets_the_channels_first_fix():
    [error] = errors_of({"input_shape": [28, 28, 1], "layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3}]})
    assert error["field"] == "input_shape" and error["index"] is None
    assert "channels-last (H, W, C) = (28, 28, 1)" in error["message"]
    assert "use [1, 28, 28]" in error["message"]


def test_kernel_larger_than_input_names_the_layer():
    spec = {"input_shape": [1, 8, 8], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 4, "kernel_size": 5},
    ]}
    [error] = errors_of(spec)
    assert (error["index"], error["type"], error["field"]) == (2, "Conv2D", "kernel_size")
    assert error["message"].startswith("layer 3 (Conv2D): the 5x5 kernel does not fit its 3x3 input (4, 3, 3)")
    assert 'padding "same"' in error["message"]


def test_missing_flatten_before_dense():
    spec = {"input_shape": [3, 32, 32], "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3}, {"type": "Dense", "units": 10}]}
    [error] = errors_of(spec)
    assert (error["index"], error["type"]) == (1, "Dense")
    assert error["message"] == "layer 2 (Dense): receives a 3-D input (32, 30, 30): add a Flatten before it"


def test_every_problem_is_reported_not_just_the_first():
    spec = {"input_shape": [1, 28, 28], "layers": [
        {"type": "Dense", "units": 16}, {"type": "LSTM", "units": 4}]}
    first, second = errors_of(spec)
    assert "add a Flatten" in first["message"] and first["index"] == 0
    assert second["index"] == 1 and second["type"] == "LSTM" and "(timesteps, features)" in second["message"]


def test_negative_units():
    [error] = errors_of({"input_shape": [4], "layers": [{"type": "Dense", "units": -3}]})
    assert (error["index"], error["type"], error["field"]) == (0, "Dense", "units")
    assert error["message"] == "layer 1 (Dense): 'units' must be a positive whole number, got -3"


def test_unknown_layer_type_suggests_the_closest():
    [error] = errors_of({"input_shape": [4], "layers": [{"type": "Dense", "units": 3}, {"type": "Dens", "units": 2}]})
    assert (error["index"], error["type"], error["field"]) == (1, "Dens", "type")
    assert error["message"] == "layer 2: unknown layer type 'Dens'; did you mean 'Dense'?"


def test_unknown_activation_and_field_typo_suggest_fixes():
    details = errors_of({"input_shape": [4], "layers": [{"type": "Dense", "units": 3, "activation": "rleu"},
                                                         {"type": "Dense", "unit": 3}]})
    messages = {(d["index"], d["field"]): d["message"] for d in details}
    assert messages[(0, "activation")] == "layer 1 (Dense): unknown activation 'rleu'; did you mean 'relu'?"
    assert messages[(1, "unit")] == "layer 2 (Dense): no field 'unit'; did you mean 'units'?"
    assert "'units' is required" in messages[(1, "units")]


def test_over_the_parameter_cap():
    spec = {"input_shape": [10_000], "layers": [{"type": "Dense", "units": 25_000}]}
    [error] = errors_of(spec, max_params=200_000_000)
    assert error["message"] == (
        "the model has 250,025,000 parameters, over the limit of 200,000,000 (TRAINBOARD_MAX_PARAMS): "
        "use fewer units or filters")


def test_over_the_activation_cap():
    spec = {"input_shape": [3, 64, 64], "layers": [{"type": "Conv2D", "filters": 64, "kernel_size": 3}]}
    [error] = errors_of(spec, max_activation_bytes=1000)
    assert "TRAINBOARD_MAX_ACTIVATION_BYTES" in error["message"]


def test_rnn_receiving_images_suggests_a_reshape():
    [error] = errors_of({"input_shape": [1, 28, 28], "layers": [{"type": "GRU", "units": 8}]})
    assert (error["index"], error["type"]) == (0, "GRU")
    assert "receives images (1, 28, 28)" in error["message"] and "Reshape([28, 28])" in error["message"]


def test_pretrained_needs_three_channels_and_a_minimum_size():
    [error] = errors_of({"input_shape": [1, 64, 64], "layers": [{"type": "Pretrained", "backbone": "resnet18"}]})
    assert "Pretrained resnet18 expects 3-channel images; the input has 1" in error["message"]
    [error] = errors_of({"input_shape": [3, 16, 16], "layers": [{"type": "Pretrained", "backbone": "resnet18"}]})
    assert "at least 32x32" in error["message"]


def test_reshape_must_keep_the_element_count():
    [error] = errors_of({"input_shape": [1, 28, 28], "layers": [{"type": "Reshape", "target_shape": [28, 27]}]})
    assert error["field"] == "target_shape" and "needs 756 values" in error["message"]


def test_no_input_shape_and_empty_layers():
    [error] = errors_of({"layers": [{"type": "Flatten"}]})
    assert error["field"] == "input_shape" and "no input shape" in error["message"]
    [error] = errors_of({"input_shape": [4], "layers": []})
    assert error["field"] == "layers" and "no layers" in error["message"]


@pytest.mark.parametrize("bad", [None, 3, "Dense", [1, 2], {"input_shape": [1, 28, 28]}, {"layers": "Dense"}])
def test_malformed_specs(bad):
    with pytest.raises(SpecError) as caught:
        parse_spec(bad)
    assert caught.value.details and all(d["index"] is None for d in caught.value.details)


def test_malformed_layers_and_values():
    with pytest.raises(SpecError) as caught:
        parse_spec({"input_shape": [1, 28, 0], "extra": 1, "layers": [
            "Dense", {"units": 3}, {"type": "Dense", "units": True}, {"type": "Dropout", "rate": 1.0},
            {"type": "Conv2D", "filters": 2, "kernel_size": [3, "a"]}]})
    by_index = {d["index"]: d for d in caught.value.details}
    assert {None, 0, 1, 2, 3, 4} <= set(by_index)
    assert "must be an object" in by_index[0]["message"]
    assert "has no 'type'" in by_index[1]["message"]
    assert by_index[2]["field"] == "units"
    assert "below 1" in by_index[3]["message"]
    assert "pair [height, width]" in by_index[4]["message"]


def test_valid_spec_round_trips():
    spec = parse_spec({"input_shape": [1, 28, 28], "layers": MLP})
    assert [layer.type for layer in spec.layers] == ["Flatten", "Dense", "Dense"]
    assert parse_spec(spec.model_dump()).model_dump() == spec.model_dump()
