"""Normalization: BatchNormalization and LayerNormalization."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from app.layers.base import Keras, LayerSpec, Out, ShapeProblem, param
from app.layers.geometry import fmt

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter

_INITIALIZERS = frozenset({"beta_initializer", "gamma_initializer", "beta_regularizer", "gamma_regularizer",
                           "beta_constraint", "gamma_constraint"})


class _Normalization(LayerSpec):
    """A scale and a shift per feature: channels of images, the last axis of vectors and sequences."""

    family: ClassVar[str] = "reg"
    source_prefix: ClassVar[str] = "norm"

    def infer(self, shape: Shape, index: int) -> Out:
        if len(shape) > 3:
            raise ShapeProblem(f"receives a {len(shape)}-D input {fmt(shape)}; it supports vectors, sequences and "
                               "images")
        return Out(shape, 2 * features(shape))


def features(shape: Shape) -> int:
    """What a normalization layer normalizes per: the channels of (C, H, W), else the last axis."""
    return shape[0] if len(shape) == 3 else shape[-1]


class BatchNormalization(_Normalization):
    type: Literal["BatchNormalization"] = "BatchNormalization"
    # Keras convention: new_running = momentum * running + (1 - momentum) * batch.
    momentum: float = param(0.99, ge=0.0, lt=1.0)
    epsilon: float = param(1e-3, gt=0.0)

    keras: ClassVar[Keras] = Keras(
        "BatchNormalization", ("axis", "momentum", "epsilon", "center", "scale"),
        fixed={"axis": (-1,), "center": (True,), "scale": (True,)},
        ignored=_INITIALIZERS | {"moving_mean_initializer", "moving_variance_initializer"})

    def describe(self) -> str:
        return "BatchNorm"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import LastAxisBatchNorm

        # Keras momentum weighs the old running value; PyTorch's weighs the new batch.
        options = {"eps": self.epsilon, "momentum": 1.0 - self.momentum}
        if len(shape) == 3:
            return nn.BatchNorm2d(shape[0], **options)
        if len(shape) == 2:
            return LastAxisBatchNorm(shape[-1], **options)
        return nn.BatchNorm1d(shape[0], **options)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        kind = "BatchNorm2d" if len(shape) == 3 else "BatchNorm1d"
        channels = features(shape)
        momentum = round(1.0 - self.momentum, 6)
        out.init.append(f"# Keras momentum {self.momentum} is PyTorch momentum {momentum}.")
        out.init.append(f"self.{name} = nn.{kind}({channels}, eps={self.epsilon!r}, momentum={momentum!r})")
        if len(shape) == 2:  # normalize each feature of (N, T, F): PyTorch wants (N, F, T)
            out.forward.append(f"x = self.{name}(x.transpose(1, 2)).transpose(1, 2)")
        else:
            out.forward.append(f"x = self.{name}(x)")


class LayerNormalization(_Normalization):
    """Keras's LayerNormalization(axis=-1): each sample's features normalized by their own mean and
    variance, then scaled and shifted (gamma, beta). Channels-first images normalize each pixel over its
    channels, as Keras does on its channels-last (H, W, C) images."""

    type: Literal["LayerNormalization"] = "LayerNormalization"
    epsilon: float = param(1e-3, gt=0.0)

    keras: ClassVar[Keras] = Keras(
        "LayerNormalization", ("axis", "epsilon", "center", "scale", "rms_scaling"),
        fixed={"axis": (-1,), "center": (True,), "scale": (True,), "rms_scaling": (False,)}, ignored=_INITIALIZERS)

    def describe(self) -> str:
        return "LayerNorm"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import ChannelLayerNorm

        if len(shape) == 3:
            return ChannelLayerNorm(shape[0], eps=self.epsilon)
        return nn.LayerNorm(shape[-1], eps=self.epsilon)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        out.init.append(f"self.{name} = nn.LayerNorm({features(shape)}, eps={self.epsilon!r})")
        if len(shape) == 3:  # normalize each pixel over its channels: LayerNorm wants them last
            out.forward.append(f"x = self.{name}(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)")
        else:
            out.forward.append(f"x = self.{name}(x)")
