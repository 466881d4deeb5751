"""Pooling over channels-first images: max, average, and global average."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from app.layers.base import CHANNELS_LAST, IntOrPair, Keras, LayerSpec, Out, Padding, param
from app.layers.conv import same_pads_2d, source_pair
from app.layers.geometry import need_image, pair, spatial, stride_text

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter


_POSITIONAL = ("pool_size", "strides", "padding", "data_format")


class _Pooling2D(LayerSpec):
    pool_size: IntOrPair = param(2, hint="2 or 2, 2")
    strides: IntOrPair | None = param(None, hint="blank: the pool size")  # None: the pool size, as in Keras
    padding: Padding = "valid"

    family: ClassVar[str] = "pool"
    source_prefix: ClassVar[str] = "pool"
    reads_2d_as_image: ClassVar[bool] = True
    torch_class: ClassVar[str]  # nn.MaxPool2d or nn.AvgPool2d

    def window(self) -> tuple[tuple[int, int], tuple[int, int]]:
        size = pair(self.pool_size)
        return size, pair(self.strides) if self.strides is not None else size

    def infer(self, shape: Shape, index: int) -> Out:
        c, _, _ = need_image(shape, index, self.type)
        size, strides = self.window()
        out_h, out_w = spatial(shape, size, strides, self.padding, "pool", "pool_size")
        return Out((c, out_h, out_w))

    def describe(self) -> str:
        (ph, pw), _ = self.window()
        extra = stride_text(self.strides, (ph, pw)) + (", same" if self.padding == "same" else "")
        return f"{self.torch_class.removesuffix('2d')} {ph}x{pw}{extra}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        size, strides = self.window()
        pool = getattr(nn, self.torch_class)(size, strides)
        return self.same_padded(pool, size, strides) if self.padding == "same" else pool

    def same_padded(self, pool: nn.Module, size: tuple[int, int], strides: tuple[int, int]) -> nn.Module:
        """The pool with Keras "same" padding in front."""
        raise NotImplementedError

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        size, strides = self.window()
        pads = same_pads_2d(shape, size, strides) if self.padding == "same" else (0, 0, 0, 0)
        name = out.name(self.source_prefix)
        out.init.append(f"self.{name} = nn.{self.torch_class}({source_pair(size)}, stride={source_pair(strides)})")
        if any(pads):
            out.forward.extend(self.padded_source(name, pads))
        else:
            out.forward.append(f"x = self.{name}(x)")

    def padded_source(self, name: str, pads: tuple[int, ...]) -> list[str]:
        """`forward` lines applying the pool `name` with Keras "same" padding."""
        raise NotImplementedError


class MaxPooling2D(_Pooling2D):
    type: Literal["MaxPooling2D"] = "MaxPooling2D"
    keras: ClassVar[Keras] = Keras("MaxPooling2D", _POSITIONAL, aliases=("MaxPool2D",), fixed=CHANNELS_LAST)
    torch_class: ClassVar[str] = "MaxPool2d"

    def same_padded(self, pool: nn.Module, size: tuple[int, int], strides: tuple[int, int]) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import SamePad2d

        return nn.Sequential(SamePad2d(size, strides, value=-math.inf), pool)

    def padded_source(self, name: str, pads: tuple[int, ...]) -> list[str]:
        return [f"x = self.{name}(nn.functional.pad(x, {pads}, value=float(\"-inf\")))"]


class AveragePooling2D(_Pooling2D):
    type: Literal["AveragePooling2D"] = "AveragePooling2D"
    keras: ClassVar[Keras] = Keras("AveragePooling2D", _POSITIONAL, aliases=("AvgPool2D",), fixed=CHANNELS_LAST)
    torch_class: ClassVar[str] = "AvgPool2d"

    def same_padded(self, pool: nn.Module, size: tuple[int, int], strides: tuple[int, int]) -> nn.Module:
        from app.layers.torch_modules import AvgPoolSame

        return AvgPoolSame(size, strides)

    def padded_source(self, name: str, pads: tuple[int, ...]) -> list[str]:
        # Keras averages over the real pixels only: divide by the padded window's pixel count.
        return ["ones = torch.ones_like(x[:1, :1])", f"summed = self.{name}(nn.functional.pad(x, {pads}))",
                f"x = summed / self.{name}(nn.functional.pad(ones, {pads}))"]


class GlobalAveragePooling2D(LayerSpec):
    type: Literal["GlobalAveragePooling2D"] = "GlobalAveragePooling2D"

    family: ClassVar[str] = "pool"
    keras: ClassVar[Keras] = Keras("GlobalAveragePooling2D", ("data_format",), aliases=("GlobalAvgPool2D",),
                                   fixed=CHANNELS_LAST)
    reads_2d_as_image: ClassVar[bool] = True

    def infer(self, shape: Shape, index: int) -> Out:
        c, _, _ = need_image(shape, index, "GlobalAveragePooling2D")
        return Out((c,))

    def describe(self) -> str:
        return "GlobalAvgPool"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        out.forward.append("x = x.mean(dim=(2, 3))")
