"""Torch modules the layer kinds build from: Keras semantics on PyTorch.

Imported only from the kinds' `build` methods (and the engine), never when the registry is read:
the web process lists, validates and draws layers without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.layers.activations import torch_module
from app.layers.base import BuildError
from app.layers.pretrained import BACKBONES


def glorot(module: nn.Linear | nn.Conv2d) -> None:
    # Keras's defaults (glorot_uniform, zero bias) make results comparable with the tutorials.
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def with_activation(body: nn.Module, name: str, dim: int) -> nn.Module:
    return body if name == "linear" else nn.Sequential(body, torch_module(name, dim))


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
    """nn.RNN/LSTM/GRU on (N, T, F): the full sequence, or the final state like Keras."""

    def __init__(self, rnn_class: str, features: int, units: int, return_sequences: bool, bidirectional: bool,
                 **options: Any):
        super().__init__()
        self.rnn: nn.RNNBase = getattr(nn, rnn_class)(features, units, batch_first=True,
                                                      bidirectional=bidirectional, **options)
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
            raise BuildError(
                f"could not get the ImageNet weights for {name} ({exc}); without internet access, put the "
                f"weights file in the data directory and use weights \"file:<path>\", or weights \"none\""
            ) from exc
    else:
        net = factory(weights=None)
    head = BACKBONES[name].head
    setattr(net, head, nn.Identity())  # keep the pooled features, drop the classifier
    if weights.startswith("file:"):
        state = _read_state_dict(weights[len("file:"):], weights_root, head)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BuildError(
                f"the weights file {weights[5:]!r} does not fit {name}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]!r})")
    return net


def _read_state_dict(relative: str, weights_root: Path | None, head: str) -> dict[str, torch.Tensor]:
    if weights_root is None:
        raise BuildError("weights \"file:...\" needs a data directory to read from")
    root = weights_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):  # "../" or a symlink out of the data directory
        raise BuildError(f"the weights file {relative!r} is outside the data directory")
    if not path.is_file():
        raise BuildError(f"the weights file {relative!r} does not exist in the data directory")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise BuildError(f"the weights file {relative!r} holds no state dict")
    # Checkpoints saved from a whole classifier carry its head, and DataParallel adds "module."
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if not key.startswith(f"{head}.")}


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of (N, C, H, W) images (LayerNorm wants them last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SequenceConv1d(nn.Module):
    """Keras's Conv1D on (N, T, F) sequences: PyTorch's Conv1d wants (N, F, T), so transpose in and out;
    `pad` is Keras's "same" padding (left, right), the extra step on the right."""

    def __init__(self, conv: nn.Conv1d, pad: tuple[int, int] = (0, 0)):
        super().__init__()
        self.conv = conv
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if any(self.pad):
            x = F.pad(x, self.pad)
        return self.conv(x).transpose(1, 2)
