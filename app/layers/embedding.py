"""Embedding: integer token ids (timesteps,) → vectors (timesteps, output_dim)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from app.layers.base import Keras, LayerSpec, Out, PositiveInt, ShapeProblem, param
from app.layers.geometry import fmt

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter


class Embedding(LayerSpec):
    type: Literal["Embedding"] = "Embedding"
    input_dim: PositiveInt = param(label="Vocabulary", example=10000, hint="token ids 0 … n-1")
    output_dim: PositiveInt = param(label="Dimension", example=64)

    family: ClassVar[str] = "embed"
    source_prefix: ClassVar[str] = "embedding"
    keras: ClassVar[Keras] = Keras("Embedding", ("input_dim", "output_dim"), ignored=frozenset({
        "embeddings_initializer", "embeddings_regularizer", "embeddings_constraint", "mask_zero"}))
    token_input: ClassVar[bool] = True

    def infer(self, shape: Shape, index: int) -> Out:
        if index != 0:
            raise ShapeProblem("Embedding must be the first layer: it turns integer token ids into vectors")
        if len(shape) != 1:
            raise ShapeProblem(f"needs token ids of shape (timesteps,), but the input is {fmt(shape)}: set "
                               "input_shape to [timesteps]", recover=(math.prod(shape), self.output_dim))
        return Out((shape[0], self.output_dim), self.input_dim * self.output_dim)

    def describe(self) -> str:
        return f"Embedding {self.input_dim}→{self.output_dim}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        return nn.Embedding(self.input_dim, self.output_dim)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        out.init.append(f"self.{name} = nn.Embedding({self.input_dim}, {self.output_dim})")
        out.forward.append(f"x = self.{name}(x)")
