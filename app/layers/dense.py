"""Dense, Activation and Dropout."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from app.layers.activations import ACTIVATIONS, ActivationName, torch_module
from app.layers.base import Keras, LayerSpec, Out, PositiveInt, ShapeProblem, param
from app.layers.geometry import fmt

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter


class Dense(LayerSpec):
    type: Literal["Dense"] = "Dense"
    units: PositiveInt = param(example=64)
    activation: ActivationName = param("linear", example="relu")
    use_bias: bool = param(True, label="Bias")

    family: ClassVar[str] = "dense"
    source_prefix: ClassVar[str] = "dense"
    keras: ClassVar[Keras] = Keras("Dense", ("units", "activation", "use_bias"))
    applies_activation: ClassVar[bool] = True

    def infer(self, shape: Shape, index: int) -> Out:
        bias = self.units if self.use_bias else 0
        if len(shape) == 3:
            raise ShapeProblem(f"receives a 3-D input {fmt(shape)}: add a Flatten before it", recover=(self.units,))
        # Like Keras and nn.Linear, Dense on (T, F) acts on the last axis of every timestep.
        features, steps = shape[-1], math.prod(shape[:-1])
        return Out(shape[:-1] + (self.units,), features * self.units + bias, flops=2 * steps * features * self.units)

    def describe(self) -> str:
        return f"Dense {self.units}{self.activation_text()}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import glorot, with_activation

        linear = nn.Linear(shape[-1], self.units, bias=self.use_bias)
        glorot(linear)
        return with_activation(linear, context.activation, dim=-1)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        bias = "" if self.use_bias else ", bias=False"
        out.init.append(f"self.{name} = nn.Linear({shape[-1]}, {self.units}{bias})")
        out.assign(f"self.{name}(x)", act)


class Activation(LayerSpec):
    type: Literal["Activation"] = "Activation"
    activation: ActivationName = param(example="relu")

    family: ClassVar[str] = "reg"
    keras: ClassVar[Keras] = Keras("Activation", ("activation",), shortcuts={
        info.keras_layer: {"activation": name} for name, info in ACTIVATIONS.items() if info.keras_layer})
    applies_activation: ClassVar[bool] = True

    def describe(self) -> str:
        return f"Activation {self.activation}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        return torch_module(context.activation, dim=1 if len(shape) == 3 else -1)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        if act != "linear":
            out.assign("x", act, dim=1 if len(shape) == 3 else -1)


class Dropout(LayerSpec):
    type: Literal["Dropout"] = "Dropout"
    rate: float = param(example=0.2, hint="fraction dropped, 0 to 1", ge=0.0, lt=1.0)

    family: ClassVar[str] = "reg"
    source_prefix: ClassVar[str] = "dropout"
    keras: ClassVar[Keras] = Keras("Dropout", ("rate", "noise_shape", "seed"),
                                   ignored=frozenset({"noise_shape", "seed"}))

    def describe(self) -> str:
        return f"Dropout {self.rate:g}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        return nn.Dropout(self.rate)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        out.init.append(f"self.{name} = nn.Dropout({self.rate!r})")
        out.forward.append(f"x = self.{name}(x)")

