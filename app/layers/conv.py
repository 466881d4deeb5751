"""Convolutions: Conv2D on channels-first images, Conv1D on (timesteps, features) sequences."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from app.layers.activations import ActivationName
from app.layers.base import CHANNELS_LAST, IntOrPair, Keras, LayerSpec, Out, Padding, PositiveInt, param
from app.layers.geometry import need_image, need_sequence, pair, same_pad, spatial, steps, stride_text

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter

class _Conv(LayerSpec):
    """Keras's convolution parameters, in its order (the sizes' types differ per kind)."""

    filters: PositiveInt = param(example=32)
    kernel_size: int
    strides: int = 1
    padding: Padding = "valid"
    activation: ActivationName = param("linear", example="relu")
    use_bias: bool = param(True, label="Bias")

    family: ClassVar[str] = "conv"
    source_prefix: ClassVar[str] = "conv"
    applies_activation: ClassVar[bool] = True


def _keras(name: str, sizes: tuple[int, ...]) -> Keras:
    return Keras(name, ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
                        "activation", "use_bias"), aliases=(name.replace("Conv", "Convolution"),),
                 fixed={**CHANNELS_LAST, "dilation_rate": (1, sizes), "groups": (1,)})


class Conv2D(_Conv):
    type: Literal["Conv2D"] = "Conv2D"
    kernel_size: IntOrPair = param(label="Kernel", example=3, hint="3 or 3, 5")
    strides: IntOrPair = 1

    keras: ClassVar[Keras] = _keras("Conv2D", (1, 1))
    reads_2d_as_image: ClassVar[bool] = True

    def infer(self, shape: Shape, index: int) -> Out:
        c, _, _ = need_image(shape, index, "Conv2D")
        kernel, strides = pair(self.kernel_size), pair(self.strides)
        out_h, out_w = spatial(shape, kernel, strides, self.padding, "kernel", "kernel_size")
        macs_per_pixel = kernel[0] * kernel[1] * c * self.filters
        params = macs_per_pixel + (self.filters if self.use_bias else 0)
        return Out((self.filters, out_h, out_w), params, flops=2 * macs_per_pixel * out_h * out_w)

    def describe(self) -> str:
        kh, kw = pair(self.kernel_size)
        extra = stride_text(self.strides, (kh, kw)) + (", same" if self.padding == "same" else "")
        return f"Conv2D {self.filters}, {kh}x{kw}{extra}{self.activation_text()}"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import SamePad2d, glorot, with_activation

        kernel, strides = pair(self.kernel_size), pair(self.strides)
        same = self.padding == "same"
        # PyTorch's own padding="same" needs stride 1 and pads odd kernels symmetrically only;
        # Keras's rule (extra pixel at the bottom/right) is what SamePad2d reproduces.
        simple = same and strides == (1, 1) and kernel[0] % 2 == 1 and kernel[1] % 2 == 1
        conv = nn.Conv2d(shape[0], self.filters, kernel, strides,
                         padding=(kernel[0] // 2, kernel[1] // 2) if simple else 0, bias=self.use_bias)
        glorot(conv)
        body: nn.Module = nn.Sequential(SamePad2d(kernel, strides), conv) if same and not simple else conv
        return with_activation(body, context.activation, dim=1)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        kernel, strides = pair(self.kernel_size), pair(self.strides)
        options = f", stride={source_pair(strides)}" if strides != (1, 1) else ""
        pads = same_pads_2d(shape, kernel, strides) if self.padding == "same" else (0, 0, 0, 0)
        symmetric = pads[0] == pads[1] and pads[2] == pads[3]
        if any(pads) and symmetric:
            options += f", padding={source_pair((pads[2], pads[0]))}"
        options += "" if self.use_bias else ", bias=False"
        out.init.append(f"self.{name} = nn.Conv2d({shape[0]}, {self.filters}, {source_pair(kernel)}{options})")
        if any(pads) and not symmetric:
            out.forward.append(f"# Keras 'same' padding puts the extra pixel at the bottom/right: {pads}")
            out.assign(f"self.{name}(nn.functional.pad(x, {pads}))", act, dim=1)
        else:
            out.assign(f"self.{name}(x)", act, dim=1)


def same_pads_2d(shape: Shape, size_window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, ...]:
    """Keras 'same' padding of (C, H, W) as F.pad's (left, right, top, bottom)."""
    return (*same_pad(shape[2], size_window[1], strides[1]), *same_pad(shape[1], size_window[0], strides[0]))


def source_pair(values: tuple[int, ...]) -> str:
    """3 for (3, 3), (3, 5) otherwise: how a person writes a size in PyTorch."""
    return str(values[0]) if values[0] == values[1] else f"({values[0]}, {values[1]})"


class Conv1D(_Conv):
    """Keras's Conv1D on (timesteps, features) sequences: `filters` features out, timesteps shortened by
    the kernel and strides as Keras does ("same": ceil(timesteps / strides))."""

    type: Literal["Conv1D"] = "Conv1D"
    kernel_size: PositiveInt = param(label="Kernel", example=3)
    strides: PositiveInt = 1

    keras: ClassVar[Keras] = _keras("Conv1D", (1,))

    def infer(self, shape: Shape, index: int) -> Out:
        length, features = need_sequence(shape, "Conv1D needs")
        out_steps = steps(length, self.kernel_size, self.strides, self.padding, shape)
        macs_per_step = self.kernel_size * features * self.filters
        params = macs_per_step + (self.filters if self.use_bias else 0)
        return Out((out_steps, self.filters), params, flops=2 * macs_per_step * out_steps)

    def describe(self) -> str:
        extra = (f", stride {self.strides}" if self.strides != 1 else "") + (", same" if self.padding == "same" else "")
        return f"Conv1D {self.filters}, {self.kernel_size}{extra}{self.activation_text()}"

    def pads(self, steps: int) -> tuple[int, int]:
        return same_pad(steps, self.kernel_size, self.strides) if self.padding == "same" else (0, 0)

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from torch import nn

        from app.layers.torch_modules import SequenceConv1d, glorot, with_activation

        conv = nn.Conv1d(shape[-1], self.filters, self.kernel_size, self.strides, bias=self.use_bias)
        glorot(conv)
        return with_activation(SequenceConv1d(conv, self.pads(shape[0])), context.activation, dim=-1)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.source_prefix)
        pads = self.pads(shape[0])
        options = f", stride={self.strides}" if self.strides != 1 else ""
        if any(pads) and pads[0] == pads[1]:
            options += f", padding={pads[0]}"
        options += "" if self.use_bias else ", bias=False"
        out.init.append(f"self.{name} = nn.Conv1d({shape[-1]}, {self.filters}, {self.kernel_size}{options})")
        out.forward.append("# Conv1d wants (batch, features, timesteps): transpose in and out")
        if any(pads) and pads[0] != pads[1]:
            out.forward.append(f"# Keras 'same' padding puts the extra step at the end: {pads}")
            out.assign(f"self.{name}(nn.functional.pad(x.transpose(1, 2), {pads})).transpose(1, 2)", act)
        else:
            out.assign(f"self.{name}(x.transpose(1, 2)).transpose(1, 2)", act)
