"""The space's paths applied to a base run: layer fields, block counts, per-layer variants, config paths."""

from __future__ import annotations

import pytest

from app.sweeps.space import SpaceError, build, check_key, combinations, grid

CNN = {"input_shape": [3, 32, 32], "layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"}, {"type": "Dropout", "rate": 0.2},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}
RNN = {"input_shape": [1, 28, 28], "layers": [{"type": "Reshape", "target_shape": [28, 28]},
                                              {"type": "LSTM", "units": 128}, {"type": "Dense", "units": 10}]}


def types(spec):
    return [layer["type"] for layer in spec["layers"]]


def test_conv_blocks_repeat_the_last_block_or_keep_the_first_ones():
    three, _ = build(CNN, {}, {"spec.conv_blocks": 3})
    assert types(three)[:6] == ["Conv2D", "MaxPooling2D"] * 3
    assert [layer.get("filters") for layer in three["layers"] if layer["type"] == "Conv2D"] == [32, 64, 64]
    one, _ = build(CNN, {}, {"spec.conv_blocks": 1})
    assert types(one) == ["Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    assert CNN["layers"][2]["filters"] == 64  # the base is never changed


def test_filters_keep_their_ratio_and_kernel_size_applies_to_every_conv():
    spec, _ = build(CNN, {}, {"spec.conv_filters": 16, "spec.kernel_size": 5})
    convs = [layer for layer in spec["layers"] if layer["type"] == "Conv2D"]
    assert [c["filters"] for c in convs] == [16, 32] and {c["kernel_size"] for c in convs} == {5}


def test_dense_variants_touch_hidden_layers_only():
    spec, _ = build(CNN, {}, {"spec.dense_units": 256, "spec.dense_blocks": 2, "spec.activation": "tanh",
                              "spec.dropout": 0.5})
    assert types(spec)[-6:] == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    hidden = [layer for layer in spec["layers"][:-1] if layer["type"] == "Dense"]
    assert [(d["units"], d["activation"]) for d in hidden] == [(256, "tanh"), (256, "tanh")]
    assert spec["layers"][-1] == {"type": "Dense", "units": 10, "activation": "softmax"}  # the output layer
    assert {layer["rate"] for layer in spec["layers"] if layer["type"] == "Dropout"} == {0.5}
    assert {c["activation"] for c in spec["layers"] if c["type"] == "Conv2D"} == {"tanh"}
    none, _ = build(CNN, {}, {"spec.dense_blocks": 0})
    assert types(none)[-2:] == ["Flatten", "Dense"]


def test_rnn_cell_and_units():
    spec, _ = build(RNN, {}, {"spec.rnn_cell": "GRU", "spec.rnn_units": 32})
    assert spec["layers"][1] == {"type": "GRU", "units": 32}
    with pytest.raises(SpaceError, match="takes SimpleRNN, LSTM, GRU"):
        build(RNN, {}, {"spec.rnn_cell": "Transformer"})
    with pytest.raises(SpaceError, match="no Conv2D layer"):
        build(RNN, {}, {"spec.conv_filters": 8})
    with pytest.raises(SpaceError, match="no layer it applies to"):
        build(RNN, {}, {"spec.kernel_size": 3})


def test_layer_fields_and_config_paths():
    spec, config = build(RNN, {"optimizer": {"name": "adam", "lr": 0.001}, "epochs": 3},
                         {"spec.layers[1].units": 64, "config.optimizer.lr": 0.1, "config.early_stopping.patience": 2})
    assert spec["layers"][1]["units"] == 64
    assert config == {"optimizer": {"name": "adam", "lr": 0.1}, "epochs": 3, "early_stopping": {"patience": 2}}


def test_keys_are_checked_against_the_settings_and_the_base_model():
    check_key("config.optimizer.lr", RNN)
    check_key("spec.layers[2].units", RNN)
    check_key("spec.rnn_cell", RNN)
    for key, words in (("config.optimizer.learning_rate", "not a run setting"), ("spec.layers[3].units", "layers 0 to 2"),
                       ("spec.depth", "not a path into the run"), ("epochs", "not a path into the run")):
        with pytest.raises(SpaceError, match=words):
            check_key(key, RNN)


def test_grid_and_checked_combinations():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
                                                    {"a": 2, "b": "y"}]
    assert len(list(combinations({"a": [1, 2], "b": [3, 4]}))) == 4
    # past the cap, each key's values one at a time with the others at their first value
    wide = {k: list(range(10)) for k in "abc"}
    checked = list(combinations(wide))
    assert len(checked) == 30 and {"a": 0, "b": 0, "c": 9} in checked
