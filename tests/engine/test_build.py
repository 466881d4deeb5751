"""The built PyTorch module agrees with the torch-free summary, layer by layer, on a real forward pass."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from app.architectures.codegen import to_pytorch_source
from app.architectures.presets import list_presets
from app.architectures.summary import summarize
from app.engine.build import build_model
from app.engine.types import EngineError

ROOT = Path(__file__).resolve().parents[2]


def dense(units, activation="linear", **extra):
    return {"type": "Dense", "units": units, "activation": activation, **extra}


LAYER_SPECS = {
    "images-same-padding-pooling-batchnorm": {"input_shape": [3, 9, 9], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"},
        {"type": "Conv2D", "filters": 5, "kernel_size": 2, "padding": "same", "use_bias": False},
        {"type": "BatchNormalization"},
        {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "AveragePooling2D", "pool_size": 2},
        {"type": "GlobalAveragePooling2D"},
        dense(6, "gelu"), {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 1e-5},
        {"type": "Activation", "activation": "elu"}, {"type": "Dropout", "rate": 0.5},
        dense(3, "softmax")]},
    "images-strides-activations": {"input_shape": [2, 12, 10], "layers": [
        {"type": "Conv2D", "filters": 3, "kernel_size": [3, 2], "strides": [2, 1], "activation": "leaky_relu"},
        {"type": "MaxPooling2D", "pool_size": [2, 3], "strides": 1},
        {"type": "Conv2D", "filters": 2, "kernel_size": 4, "strides": 3, "padding": "same", "activation": "tanh"},
        {"type": "Activation", "activation": "softmax"},
        {"type": "Flatten"}, dense(4, "sigmoid", use_bias=False), {"type": "Activation", "activation": "sigmoid"}]},
    "recurrent": {"input_shape": [6, 5], "layers": [
        {"type": "SimpleRNN", "units": 4, "return_sequences": True, "activation": "relu"},
        {"type": "BatchNormalization"},
        {"type": "LSTM", "units": 3, "bidirectional": True, "return_sequences": True},
        dense(7, "relu"),
        {"type": "GRU", "units": 5, "bidirectional": True},
        {"type": "Dropout", "rate": 0.1}, dense(2)]},
    "recurrent-last-state": {"input_shape": [4, 3], "layers": [
        {"type": "SimpleRNN", "units": 2, "bidirectional": True}, dense(2)]},
    "embedding": {"input_shape": [7], "layers": [
        {"type": "Embedding", "input_dim": 50, "output_dim": 4},
        {"type": "GRU", "units": 3, "return_sequences": True}, {"type": "Flatten"}, dense(1, "sigmoid")]},
    "conv1d-layernorm-sequences": {"input_shape": [11, 3], "layers": [
        {"type": "Conv1D", "filters": 4, "kernel_size": 4, "strides": 2, "padding": "same", "activation": "relu"},
        {"type": "LayerNormalization"},
        {"type": "Conv1D", "filters": 5, "kernel_size": 2, "padding": "same", "use_bias": False},
        {"type": "Conv1D", "filters": 3, "kernel_size": 3, "strides": 2, "activation": "gelu"},
        {"type": "LayerNormalization", "epsilon": 1e-5}, {"type": "Flatten"},
        dense(4), {"type": "LayerNormalization"}, dense(2, "softmax")]},
    "conv1d-softmax-end-layernorm-images": {"input_shape": [3, 5, 4], "layers": [
        {"type": "LayerNormalization"}, {"type": "Conv2D", "filters": 2, "kernel_size": 2},
        {"type": "Reshape", "target_shape": [2, -1]}, {"type": "Conv1D", "filters": 6, "kernel_size": 1},
        {"type": "Conv1D", "filters": 3, "kernel_size": 5, "padding": "same", "activation": "softmax"}]},
    "reshape": {"input_shape": [1, 4, 6], "layers": [
        {"type": "Reshape", "target_shape": [4, 6]}, dense(3),
        {"type": "Reshape", "target_shape": [-1]}, {"type": "Reshape", "target_shape": [3, 2, 2]},
        {"type": "Conv2D", "filters": 2, "kernel_size": 1}, {"type": "Flatten"}, dense(2)]},
}
PRETRAINED_SPECS = {
    f"{backbone}-{size}{'-trainable' if trainable else ''}": {"input_shape": [3, size, size], "layers": [
        {"type": "Pretrained", "backbone": backbone, "weights": "none", "trainable": trainable},
        {"type": "Dropout", "rate": 0.2}, dense(10, "softmax")]}
    for backbone, size, trainable in [("resnet18", 32, False), ("resnet18", 64, True),
                                      ("mobilenet_v3_small", 32, False), ("mobilenet_v3_small", 64, False)]
}


def runnable_preset_specs() -> dict[str, dict]:
    """Presets, with ImageNet downloads swapped for random weights (tests run offline)."""
    specs = {}
    for preset in list_presets():
        spec = copy.deepcopy(preset.spec)
        for layer in spec["layers"]:
            if layer["type"] == "Pretrained":
                layer["weights"] = "none"
        specs[f"preset-{preset.name}"] = spec
    return specs


ALL_SPECS = {**LAYER_SPECS, **PRETRAINED_SPECS, **runnable_preset_specs()}


def n_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def sample_input(summary, batch: int = 2) -> torch.Tensor:
    if summary.input_dtype == "int64":
        return torch.randint(0, 10, (batch, *summary.input_shape))
    return torch.randn(batch, *summary.input_shape)


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_summary_matches_the_built_module_layer_by_layer(name):
    spec = ALL_SPECS[name]
    summary = summarize(spec)
    model = build_model(spec)
    assert len(model.layers) == len(summary.layers)
    shapes: dict[int, list[int]] = {}
    for index, module in enumerate(model.layers):
        module.register_forward_hook(lambda _m, _i, out, index=index: shapes.__setitem__(index, list(out.shape[1:])))
    output = model(sample_input(summary))

    assert list(output.shape[1:]) == summary.output_shape
    for layer in summary.layers:
        module = model.layers[layer.index]
        assert shapes[layer.index] == layer.output_shape, (layer.index, layer.type)
        assert n_params(module) == layer.params, (layer.index, layer.type)
        assert n_params(module, trainable_only=True) == layer.trainable_params, (layer.index, layer.type)
    assert n_params(model) == summary.total_params
    assert n_params(model, trainable_only=True) == summary.trainable_params
    assert summary.frozen_params == summary.total_params - summary.trainable_params
    assert model.output_activation == summary.output_activation


@pytest.mark.parametrize("name", ["images-same-padding-pooling-batchnorm", "reshape", "preset-cifar10-cnn",
                                  "preset-mnist-mlp", "conv1d-layernorm-sequences",
                                  "conv1d-softmax-end-layernorm-images"])
def test_flops_match_torchs_flop_counter(name):
    spec = ALL_SPECS[name]
    summary = summarize(spec)
    model = build_model(spec).eval()
    with FlopCounterMode(display=False) as counter:
        model(sample_input(summary, batch=1))
    assert counter.get_total_flops() == summary.flops


def test_keras_same_padding_puts_the_extra_pixel_bottom_right():
    spec = {"input_shape": [1, 4, 4], "layers": [
        {"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"}]}
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # TF pads 0 rows on top and 1 at the bottom: windows start at rows/cols 0 and 2.
    assert build_model(spec)(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    average = {"input_shape": [1, 4, 4], "layers": [
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"}]}
    # Padded pixels do not count: the bottom-right window averages the 2x2 real pixels.
    assert build_model(average)(x)[0, 0, 1, 1].item() == pytest.approx((10 + 11 + 14 + 15) / 4)


def test_frozen_backbone_stays_in_eval_mode_and_out_of_the_gradient():
    model = build_model(PRETRAINED_SPECS["mobilenet_v3_small-32"]).train()
    backbone = model.layers[0]
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert list(backbone.parameters()) and not any(p.requires_grad for p in backbone.parameters())
    assert model.layers[2].training
    trainable = build_model(PRETRAINED_SPECS["resnet18-64-trainable"]).train()
    backbone_parameters = list(trainable.layers[0].parameters())
    assert backbone_parameters and all(p.requires_grad for p in backbone_parameters)
    assert trainable.layers[0].training


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_backbone_weights_load_from_a_file_inside_the_data_dir(tmp_path, suffix):
    import torchvision
    from safetensors.torch import save_file

    source = torchvision.models.mobilenet_v3_small(weights=None)
    (tmp_path / "weights").mkdir()
    path = tmp_path / "weights" / f"m{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    spec = {"input_shape": [3, 32, 32], "layers": [
        {"type": "Pretrained", "backbone": "mobilenet_v3_small", "weights": f"file:weights/m{suffix}"}]}
    model = build_model(spec, weights_root=tmp_path)
    loaded = model.layers[0].net.state_dict()
    assert set(loaded) <= set(state)  # the backbone without its classifier: every tensor came from the file
    assert all(torch.equal(value, state[key]) for key, value in loaded.items())
    assert torch.equal(loaded["features.0.0.weight"], state["features.0.0.weight"])


def test_checkpoint_loaders_can_skip_pretrained_weights(tmp_path):
    spec = {"input_shape": [3, 32, 32], "layers": [
        {"type": "Pretrained", "backbone": "mobilenet_v3_small", "weights": "file:missing.pt"}, dense(2)]}
    model = build_model(spec, weights_root=tmp_path, load_pretrained=False)
    assert n_params(model) == summarize(spec).total_params
    frozen = list(model.layers[0].parameters())
    assert frozen and not any(p.requires_grad for p in frozen)


def test_backbone_weights_outside_the_data_dir_are_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    outside = tmp_path / "secret.pt"
    torch.save({}, outside)
    (root / "link.pt").symlink_to(outside)
    for weights in ("file:../secret.pt", "file:link.pt"):
        spec = {"input_shape": [3, 32, 32], "layers": [
            {"type": "Pretrained", "backbone": "mobilenet_v3_small", "weights": weights}]}
        with pytest.raises(EngineError, match="outside the data directory"):
            build_model(spec, weights_root=root)
    with pytest.raises(EngineError, match="does not exist"):
        build_model({"input_shape": [3, 32, 32], "layers": [
            {"type": "Pretrained", "backbone": "resnet18", "weights": "file:nope.pt"}]}, weights_root=root)


@pytest.mark.parametrize("ending", ["dense-softmax", "activation-softmax"])
def test_final_softmax_is_left_to_the_loss(ending):
    """Cross-entropy on the returned logits learns a separable problem: no double softmax."""
    torch.manual_seed(0)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = torch.randint(0, 3, (600,))
    x = centers[y] + 0.5 * torch.randn(600, 2)
    head = [dense(3, "softmax")] if ending == "dense-softmax" else [
        dense(3), {"type": "Activation", "activation": "softmax"}]
    model = build_model({"input_shape": [2], "layers": [dense(16, "relu"), *head]})
    assert model.output_activation == "softmax"
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    logits = model.eval()(x)
    assert not torch.allclose(logits.sum(dim=1), torch.ones(600))  # logits, not probabilities
    assert (logits.argmax(dim=1) == y).float().mean().item() > 0.97


def test_generated_source_builds_the_same_parameter_count_in_a_fresh_interpreter(tmp_path):
    specs = {name: ALL_SPECS[name] for name in [*runnable_preset_specs(), *LAYER_SPECS, "resnet18-64-trainable"]}
    expected = {}
    for index, (name, spec) in enumerate(specs.items()):
        (tmp_path / f"model_{index}.py").write_text(to_pytorch_source(spec))
        expected[f"model_{index}.py"] = (name, summarize(spec).total_params, build_model(spec))
    # One interpreter runs every file as __main__ (the generated demo block): one torch import.
    runner = (
        "import contextlib, io, json, runpy, sys\n"
        "counts = {}\n"
        "for path in sys.argv[1:]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        runpy.run_path(path, run_name='__main__')\n"
        "    counts[path.rsplit('/', 1)[-1]] = out.getvalue().splitlines()\n"
        "print(json.dumps(counts))\n"
    )
    files = [str(tmp_path / name) for name in expected]
    result = subprocess.run([sys.executable, "-c", runner, *files], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.splitlines()[-1])
    for file_name, (name, total, model) in expected.items():
        shape_line, params_line = printed[file_name]
        assert params_line == f"{total} parameters", name
        assert n_params(model) == total
        summary = summarize(specs[name])
        assert shape_line == str((1, *summary.output_shape)), name
