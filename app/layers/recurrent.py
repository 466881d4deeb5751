"""Recurrent layers on (timesteps, features) sequences: SimpleRNN, LSTM, GRU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from app.layers.base import Keras, KerasUnsupported, LayerSpec, Out, PositiveInt, param
from app.layers.geometry import need_sequence

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter

# Keras arguments with no PyTorch counterpart here: accepted at their default only.
_FIXED = {"recurrent_activation": ("sigmoid",), "dropout": (0, 0.0), "recurrent_dropout": (0, 0.0),
          "go_backwards": (False,), "stateful": (False,), "return_state": (False,), "reset_after": (True,),
          "time_major": (False,)}
_IGNORED = frozenset({"recurrent_initializer", "recurrent_regularizer", "recurrent_constraint", "unroll", "seed"})
_GATED = ("units", "activation", "recurrent_activation")


class _Recurrent(LayerSpec):
    units: PositiveInt = param(example=64)
    return_sequences: bool = False
    bidirectional: bool = False

    family: ClassVar[str] = "rnn"
    cell: ClassVar[tuple[str, int]]  # PyTorch's module (nn.RNN, nn.LSTM, nn.GRU) and its gates per cell

    def infer(self, shape: Shape, index: int) -> Out:
        steps, features = need_sequence(shape, "recurrent layers need")
        directions, gates = 2 if self.bidirectional else 1, self.cell[1]
        # PyTorch's recurrent layers carry two bias vectors (b_ih and b_hh), Keras's one.
        params = directions * gates * (self.units * features + self.units * self.units + 2 * self.units)
        flops = directions * 2 * steps * gates * (self.units * features + self.units * self.units)
        width = directions * self.units
        return Out((steps, width) if self.return_sequences else (width,), params, flops=flops)

    def describe(self) -> str:
        flags = ", bidirectional" if self.bidirectional else ""
        flags += ", sequences" if self.return_sequences else ""
        return f"{self.type} {self.units}{flags}{self.activation_text()}"

    def torch_options(self) -> dict[str, Any]:
        return {}

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from app.layers.torch_modules import Recurrent

        return Recurrent(self.cell[0], shape[-1], self.units, self.return_sequences, self.bidirectional,
                         **self.torch_options())

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        name = out.name(self.cell[0].lower())
        options = ", bidirectional=True" if self.bidirectional else ""
        options += "".join(f", {key}={value!r}" for key, value in self.torch_options().items())
        out.init.append(f"self.{name} = nn.{self.cell[0]}({shape[-1]}, {self.units}, batch_first=True{options})")
        if self.return_sequences:
            out.forward.append(f"x, _ = self.{name}(x)")
            return
        state = "(h_n, _)" if self.cell[0] == "LSTM" else "h_n"
        out.forward.append(f"_, {state} = self.{name}(x)")
        if self.bidirectional:
            out.forward.append("# Final states of the forward and the backward direction, side by side.")
            out.forward.append("x = torch.cat([h_n[-2], h_n[-1]], dim=1)")
        else:
            out.forward.append("x = h_n[-1]  # the final state")

    @classmethod
    def from_keras(cls, args: dict[str, Any]) -> dict[str, Any]:
        field = cls.model_fields.get("activation")
        allowed = get_args(field.annotation) if field is not None else ("tanh",)
        activation = args.pop("activation", "tanh")
        if activation not in allowed:
            choices = " or ".join(repr(a) for a in allowed)
            raise KerasUnsupported(f"{cls.__name__} supports only activation={choices} (as PyTorch does)")
        if args.pop("use_bias", True) is not True:
            raise KerasUnsupported(f"{cls.__name__}(use_bias=False) is not supported")
        return {**args, "activation": activation} if "activation" in cls.model_fields else args


class SimpleRNN(_Recurrent):
    type: Literal["SimpleRNN"] = "SimpleRNN"
    # PyTorch's nn.RNN offers only these two nonlinearities.
    activation: Literal["tanh", "relu"] = "tanh"

    keras: ClassVar[Keras] = Keras("SimpleRNN", ("units", "activation"), fixed=_FIXED, ignored=_IGNORED)
    cell: ClassVar[tuple[str, int]] = ("RNN", 1)

    def torch_options(self) -> dict[str, Any]:
        return {"nonlinearity": self.activation} if self.activation != "tanh" else {}


class LSTM(_Recurrent):
    type: Literal["LSTM"] = "LSTM"
    keras: ClassVar[Keras] = Keras("LSTM", _GATED, fixed=_FIXED, ignored=_IGNORED)
    cell: ClassVar[tuple[str, int]] = ("LSTM", 4)


class GRU(_Recurrent):
    type: Literal["GRU"] = "GRU"
    keras: ClassVar[Keras] = Keras("GRU", _GATED, fixed=_FIXED, ignored=_IGNORED)
    cell: ClassVar[tuple[str, int]] = ("GRU", 3)
