"""Layers that only rearrange values: Flatten and Reshape."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import field_validator

from app.layers.base import CHANNELS_LAST, Keras, LayerSpec, Out, ShapeProblem, param
from app.layers.geometry import fmt

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter


class Flatten(LayerSpec):
    type: Literal["Flatten"] = "Flatten"

    family: ClassVar[str] = "shape"
    keras: ClassVar[Keras] = Keras("Flatten", ("data_format",), fixed=CHANNELS_LAST)
    reads_2d_as_image: ClassVar[bool] = True

    def infer(self, shape: Shape, index: int) -> Out:
        return Out((math.prod(shape),))

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        return nn.Flatten()

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        out.forward.append("x = torch.flatten(x, 1)")


class Reshape(LayerSpec):
    type: Literal["Reshape"] = "Reshape"
    target_shape: list[int] = param(example=[28, 28], hint="-1 for the rest", min_length=1)

    family: ClassVar[str] = "shape"
    keras: ClassVar[Keras] = Keras("Reshape", ("target_shape",))
    reads_2d_as_image: ClassVar[bool] = True

    @field_validator("target_shape")
    @classmethod
    def _one_unknown_at_most(cls, value: list[int]) -> list[int]:
        if any(v == 0 or v < -1 for v in value) or value.count(-1) > 1:
            raise ValueError("use positive sizes, with at most one -1 for 'the rest'")
        return value

    def infer(self, shape: Shape, index: int) -> Out:
        count, target = math.prod(shape), list(self.target_shape)
        known = math.prod(v for v in target if v != -1)
        if -1 in target:
            if count % known:
                raise ShapeProblem(f"cannot reshape {fmt(shape)} ({count} values) into {fmt(target)}: "
                                   f"{count} is not a multiple of {known}", "target_shape")
            target[target.index(-1)] = count // known
        elif known != count:
            raise ShapeProblem(f"Reshape to {fmt(target)} needs {known} values but its input {fmt(shape)} has "
                               f"{count}: the sizes must multiply to {count}", "target_shape")
        return Out(tuple(target))

    def describe(self) -> str:
        return f"Reshape {tuple(self.target_shape)}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from app.layers.torch_modules import Reshape as ReshapeModule

        return ReshapeModule(self.target_shape)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        out.forward.append(f"x = x.reshape(x.shape[0], {', '.join(str(v) for v in self.target_shape)})")

    @classmethod
    def from_keras(cls, args: dict[str, Any]) -> dict[str, Any]:
        target = args.get("target_shape")
        if isinstance(target, list) and len(target) == 3:  # Keras (H, W, C) → channels-first
            args["target_shape"] = [target[2], target[0], target[1]]
        return args
