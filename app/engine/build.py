"""Spec → nn.Module, with Keras semantics on PyTorch.

The spec arrives as a plain dict that `app.architectures.summary` has already validated; the
engine does not import the architectures package (import rules), so defaults are restated here
and tests check that both sides agree layer by layer.

The module returns LOGITS: a final softmax or sigmoid is not applied in `forward` but named in
`model.output_activation`, so the engine can use cross-entropy on logits (no double softmax)
and apply the activation itself when it needs probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.types import EngineError

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


class SpecModel(nn.Module):
    """A sequential model: `layers[i]` is spec layer i (forward hooks on it see its output)."""

    def __init__(self, layers: list[nn.Module], output_activation: str | None, input_dtype: torch.dtype):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.output_activation = output_activation
        self.input_dtype = input_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def build_model(spec: dict[str, Any], input_shape: Sequence[int] | None = None, *,
                weights_root: Path | None = None, load_pretrained: bool = True) -> SpecModel:
    """Build the PyTorch module for a validated spec; `input_shape` (the data set's) wins over the spec's.

    `load_pretrained=False` builds backbones with random weights: for callers that load a whole
    checkpoint right after (no ImageNet download, no weights file needed).
    """
    shape = list(input_shape if input_shape is not None else spec.get("input_shape") or [])
    if not shape:
        raise EngineError("the model has no input shape: set input_shape in the spec or choose a data set")
    specs = spec["layers"]
    embedding_first = specs[0]["type"] == "Embedding"
    last = specs[-1]
    output_activation = last.get("activation") if last["type"] in ("Dense", "Conv2D", "Activation") else None
    if output_activation not in OUTPUT_ACTIVATIONS:
        output_activation = None

    # Each layer's input size comes from running a zero sample through the layers built so far:
    # the shapes are PyTorch's own, not a second copy of the summary's formulas.
    probe = torch.zeros(1, *shape, dtype=torch.long if embedding_first else torch.float32)
    layers: list[nn.Module] = []
    for index, layer_spec in enumerate(specs):
        is_last = index == len(specs) - 1
        if layer_spec["type"] == "Pretrained" and not load_pretrained:
            layer_spec = {**layer_spec, "weights": "none"}
        module = _build_layer(layer_spec, tuple(probe.shape[1:]), weights_root,
                              drop_activation=is_last and output_activation is not None)
        module.eval()
        with torch.no_grad():
            probe = module(probe)
        module.train()
        layers.append(module)
    model = SpecModel(layers, output_activation, torch.long if embedding_first else torch.float32)
    return model.train()


def activation(name: str, dim: int = -1) -> nn.Module:
    """The module for a Keras activation name; softmax acts on `dim` (channels for images)."""
    if name == "softmax":
        return nn.Softmax(dim=dim)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)  # Keras 3's default negative slope
    return {"linear": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "gelu": nn.GELU, "elu": nn.ELU}[name]()


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _build_layer(layer: dict[str, Any], shape: tuple[int, ...], weights_root: Path | None,
                 drop_activation: bool) -> nn.Module:
    kind = layer["type"]
    act_name = "linear" if drop_activation else layer.get("activation", "linear")
    if kind == "Dense":
        linear = nn.Linear(shape[-1], layer["units"], bias=layer.get("use_bias", True))
        _glorot(linear)
        return _with_activation(linear, act_name, dim=-1)
    if kind == "Conv2D":
        kernel, strides = _pair(layer["kernel_size"]), _pair(layer.get("strides", 1))
        same = layer.get("padding", "valid") == "same"
        # PyTorch's own padding="same" needs stride 1 and pads odd kernels symmetrically only;
        # Keras's rule (extra pixel at the bottom/right) is what SamePad2d reproduces.
        simple = same and strides == (1, 1) and kernel[0] % 2 == 1 and kernel[1] % 2 == 1
        conv = nn.Conv2d(shape[0], layer["filters"], kernel, strides,
                         padding=(kernel[0] // 2, kernel[1] // 2) if simple else 0,
                         bias=layer.get("use_bias", True))
        _glorot(conv)
        body: nn.Module = nn.Sequential(SamePad2d(kernel, strides), conv) if same and not simple else conv
        return _with_activation(body, act_name, dim=1)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        window = _pair(layer.get("pool_size", 2))
        strides = _pair(layer["strides"]) if layer.get("strides") is not None else window
        same = layer.get("padding", "valid") == "same"
        if kind == "MaxPooling2D":
            pool = nn.MaxPool2d(window, strides)
            return nn.Sequential(SamePad2d(window, strides, value=-math.inf), pool) if same else pool
        return AvgPoolSame(window, strides) if same else nn.AvgPool2d(window, strides)
    if kind == "GlobalAveragePooling2D":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if kind == "Flatten":
        return nn.Flatten()
    if kind == "Dropout":
        return nn.Dropout(layer["rate"])
    if kind == "BatchNormalization":
        # Keras momentum weighs the old running value; PyTorch's weighs the new batch.
        options = {"eps": layer.get("epsilon", 1e-3), "momentum": 1.0 - layer.get("momentum", 0.99)}
        if len(shape) == 3:
            return nn.BatchNorm2d(shape[0], **options)
        if len(shape) == 2:
            return LastAxisBatchNorm(shape[-1], **options)
        return nn.BatchNorm1d(shape[0], **options)
    if kind == "Activation":
        return activation(act_name, dim=1 if len(shape) == 3 else -1)
    if kind in ("SimpleRNN", "LSTM", "GRU"):
        return Recurrent(kind, shape[-1], layer["units"], layer.get("return_sequences", False),
                         layer.get("bidirectional", False), layer.get("activation", "tanh"))
    if kind == "Embedding":
        return nn.Embedding(layer["input_dim"], layer["output_dim"])
    if kind == "Reshape":
        return Reshape(layer["target_shape"])
    if kind == "Pretrained":
        return PretrainedBackbone(layer["backbone"], layer.get("weights", "imagenet"),
                                  layer.get("trainable", False), weights_root)
    raise EngineError(f"unknown layer type '{kind}'")


def _glorot(module: nn.Linear | nn.Conv2d) -> None:
    # Keras's defaults (glorot_uniform, zero bias) make results comparable with the tutorials.
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _with_activation(body: nn.Module, name: str, dim: int) -> nn.Module:
    return body if name == "linear" else nn.Sequential(body, activation(name, dim))


class SamePad2d(nn.Module):
    """Keras/TensorFlow 'same' padding: output = ceil(input / stride), extra pixel bottom/right."""

    def __init__(self, window: tuple[int, int], strides: tuple[int, int], value: float = 0.0):
        super().__init__()
        self.window, self.strides, self.value = window, strides, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, window, stride in ((x.shape[-1], self.window[1], self.strides[1]),
                                     (x.shape[-2], self.window[0], self.strides[0])):
            total = max((math.ceil(size / stride) - 1) * stride + window - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=self.value) if any(pads) else x


class AvgPoolSame(nn.Module):
    """Keras 'same' average pooling: padded pixels do not count towards the average."""

    def __init__(self, window: tuple[int, int], strides: tuple[int, int]):
        super().__init__()
        self.pad = SamePad2d(window, strides)
        self.pool = nn.AvgPool2d(window, strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:1, :1])
        return self.pool(self.pad(x)) / self.pool(self.pad(ones))


class LastAxisBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the feature axis of (N, T, F) sequences, as Keras does (PyTorch wants (N, F, T))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Recurrent(nn.Module):
    """SimpleRNN/LSTM/GRU on (N, T, F): the full sequence, or the final state like Keras."""

    def __init__(self, kind: str, features: int, units: int, return_sequences: bool, bidirectional: bool,
                 nonlinearity: str = "tanh"):
        super().__init__()
        options: dict[str, Any] = {"batch_first": True, "bidirectional": bidirectional}
        if kind == "SimpleRNN":
            self.rnn: nn.RNNBase = nn.RNN(features, units, nonlinearity=nonlinearity, **options)
        else:
            self.rnn = (nn.LSTM if kind == "LSTM" else nn.GRU)(features, units, **options)
        self.return_sequences = return_sequences
        self.bidirectional = bidirectional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, state = self.rnn(x)
        if self.return_sequences:
            return sequence
        # h_n, not sequence[:, -1]: for the backward direction the final state is at t = 0.
        h_n = state[0] if isinstance(state, tuple) else state
        return torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]


class Reshape(nn.Module):
    def __init__(self, target_shape: Sequence[int]):
        super().__init__()
        self.target_shape = tuple(target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.target_shape)

    def extra_repr(self) -> str:
        return f"target_shape={self.target_shape}"


class PretrainedBackbone(nn.Module):
    """A torchvision backbone without its classifier: images → pooled feature vector."""

    def __init__(self, name: str, weights: str, trainable: bool, weights_root: Path | None):
        super().__init__()
        self.net = load_backbone(name, weights, weights_root)
        self.trainable = trainable
        if not trainable:
            for parameter in self.net.parameters():
                parameter.requires_grad = False

    def train(self, mode: bool = True) -> PretrainedBackbone:
        # A frozen backbone keeps its BatchNorm statistics: always eval mode.
        return super().train(mode and self.trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_backbone(name: str, weights: str, weights_root: Path | None) -> nn.Module:
    """A torchvision backbone with its classifier replaced by identity, weights loaded as asked."""
    import torchvision  # heavy: imported only by models that use a backbone

    factory = getattr(torchvision.models, name)
    if weights == "imagenet":
        try:
            net = factory(weights="DEFAULT")  # torchvision downloads into its cache on first use
        except Exception as exc:  # no network, proxy, corrupt cache: all end the same way for the user
            raise EngineError(
                f"could not get the ImageNet weights for {name} ({exc}); without internet access, put the "
                f"weights file in the data directory and use weights \"file:<path>\", or weights \"none\""
            ) from exc
    else:
        net = factory(weights=None)
    _drop_classifier(net)
    if weights.startswith("file:"):
        state = _read_state_dict(weights[len("file:"):], weights_root)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise EngineError(
                f"the weights file {weights[5:]!r} does not fit {name}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]!r})")
    return net


def _drop_classifier(net: nn.Module) -> None:
    if hasattr(net, "fc"):  # ResNets
        net.fc = nn.Identity()
    else:  # MobileNet, EfficientNet
        net.classifier = nn.Identity()


def _read_state_dict(relative: str, weights_root: Path | None) -> dict[str, torch.Tensor]:
    if weights_root is None:
        raise EngineError("weights \"file:...\" needs a data directory to read from")
    root = weights_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):  # "../" or a symlink out of the data directory
        raise EngineError(f"the weights file {relative!r} is outside the data directory")
    if not path.is_file():
        raise EngineError(f"the weights file {relative!r} does not exist in the data directory")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise EngineError(f"the weights file {relative!r} holds no state dict")
    # Checkpoints saved from a whole classifier carry its head, and DataParallel adds "module."
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if not key.startswith(("fc.", "classifier."))}
