"""Shapes, parameter counts and FLOPs from formulas; the tutorial's numbers; presets."""

from __future__ import annotations

import pytest

from app.architectures.presets import get_preset, list_presets
from app.architectures.summary import summarize
from app.core.errors import NotFound

CIFAR_CNN = {"input_shape": [3, 32, 32], "layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": [3, 3], "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": [2, 2]},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10},
]}


def test_mnist_mlp_has_the_tutorials_parameter_count():
    summary = summarize({"input_shape": [1, 28, 28], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    assert summary.total_params == summary.trainable_params == 101_770
    assert summary.frozen_params == 0
    assert summary.output_shape == [10] and summary.output_activation == "softmax"
    assert [layer.description for layer in summary.layers] == ["Flatten", "Dense 128, relu", "Dense 10, softmax"]
    assert summary.flops == 2 * (784 * 128 + 128 * 10)
    assert summary.activation_bytes == 4 * (784 + 128 + 10)


def test_cifar_cnn_shapes_and_parameter_count():
    summary = summarize(CIFAR_CNN)
    assert summary.total_params == 122_570
    assert [layer.output_shape for layer in summary.layers] == [
        [32, 30, 30], [32, 15, 15], [64, 13, 13], [64, 6, 6], [64, 4, 4], [1024], [64], [10]]
    assert summary.layers[0].flops == 2 * 3 * 3 * 3 * 32 * 30 * 30
    assert summary.output_activation is None


def test_input_shape_argument_wins_over_the_specs():
    summary = summarize({"input_shape": [1, 28, 28], "layers": [{"type": "Flatten"}]}, [3, 32, 32])
    assert summary.input_shape == [3, 32, 32] and summary.output_shape == [3072]


def test_same_padding_strides_and_pooling_follow_keras():
    summary = summarize({"input_shape": [3, 9, 7], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
        {"type": "AveragePooling2D", "pool_size": [2, 1], "strides": 1},
        {"type": "GlobalAveragePooling2D"}]})
    assert [layer.output_shape for layer in summary.layers] == [[4, 5, 4], [4, 3, 2], [4, 2, 2], [4]]


def test_recurrent_parameter_counts_follow_pytorch_two_biases():
    summary = summarize({"input_shape": [28, 28], "layers": [
        {"type": "LSTM", "units": 128, "return_sequences": True},
        {"type": "GRU", "units": 8, "bidirectional": True},
        {"type": "Dense", "units": 10}]})
    lstm, gru, dense = summary.layers
    assert lstm.params == 4 * (128 * 28 + 128 * 128 + 2 * 128) and lstm.output_shape == [28, 128]
    assert gru.params == 2 * 3 * (8 * 128 + 8 * 8 + 2 * 8) and gru.output_shape == [16]
    assert dense.params == 16 * 10 + 10


def test_embedding_dense_on_sequences_and_batchnorm():
    summary = summarize({"input_shape": [20], "layers": [
        {"type": "Embedding", "input_dim": 1000, "output_dim": 16},
        {"type": "Dense", "units": 8},
        {"type": "BatchNormalization"},
        {"type": "SimpleRNN", "units": 4, "activation": "relu"}]})
    assert summary.input_dtype == "int64"
    assert [layer.output_shape for layer in summary.layers] == [[20, 16], [20, 8], [20, 8], [4]]
    assert [layer.params for layer in summary.layers] == [16_000, 136, 16, 4 * 8 + 16 + 8]


def test_pretrained_frozen_counts_and_area_scaled_flops():
    summary = summarize(get_preset("transfer-resnet18").spec)
    backbone, head = summary.layers
    assert backbone.params == 11_176_512 and backbone.trainable_params == 0
    assert summary.trainable_params == head.params == 5130
    assert summary.frozen_params == 11_176_512
    assert backbone.flops == round(3_627_122_688 * 32 * 32 / 224 / 224)


def test_presets_validate_and_have_the_expected_counts():
    expected = {"mnist-mlp": 101_770, "mnist-mlp-dropout": 101_770, "cifar10-cnn": 122_570,
                "mnist-lstm": 4 * (128 * 28 + 128 * 128 + 256) + 1290, "transfer-resnet18": 11_181_642}
    presets = list_presets()
    assert [p.name for p in presets] == list(expected)
    for preset in presets:
        assert preset.dataset in ("mnist", "cifar10") and preset.title and preset.description.endswith(".")
        assert summarize(preset.spec).total_params == expected[preset.name], preset.name


def test_get_preset_returns_a_copy_and_unknown_names_list_the_known():
    get_preset("mnist-mlp").spec["layers"].clear()
    assert get_preset("mnist-mlp").spec["layers"]
    with pytest.raises(NotFound) as caught:
        get_preset("mnist")
    assert "mnist-mlp, mnist-mlp-dropout" in caught.value.message
