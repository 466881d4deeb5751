"""The activation vocabulary: each name once, with what it means, how torch and generated source apply it,
and the Keras layers that stand for it. Pure Python: torch is imported only when a module is built."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

# Keras 3's default negative slope for leaky_relu (PyTorch's is 0.01): models match the tutorials.
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class ActivationInfo:
    """One activation: its formula and explanation (the explainer page), its curve, and its PyTorch spelling."""

    name: str
    formula: str
    text: str
    function: Callable[[float], float]  # the curve the explainer plots on [-4, 4]
    source: str  # generated PyTorch source: {x} is the input expression, {dim} softmax's axis
    keras_layer: str = ""  # the Keras layer class that applies it (ReLU(), Softmax()...), if any
    note: str = ""


def _softmax_first(x: float) -> float:
    """The first probability of softmax([x, 1, 0]): how one logit moves its class's probability."""
    exps = [math.exp(x), math.e, 1.0]
    return exps[0] / sum(exps)


# Order: what people reach for first comes first (the builder's menus and the explainer follow it).
ACTIVATIONS: dict[str, ActivationInfo] = {a.name: a for a in [
    ActivationInfo("relu", "relu(x) = max(0, x)",
                   "The default for hidden layers: cheap, and its gradient is 1 for every positive input, so deep "
                   "networks keep learning. Units whose input stays negative stop learning (“dead” units).",
                   lambda x: max(0.0, x), "torch.relu({x})", "ReLU"),
    ActivationInfo("sigmoid", "σ(x) = 1 / (1 + e⁻ˣ)",
                   "Squashes any number into (0, 1): use it on the output for yes/no (binary or multi-label) "
                   "problems. In hidden layers it saturates and slows learning.",
                   lambda x: 1 / (1 + math.exp(-x)), "torch.sigmoid({x})"),
    ActivationInfo("tanh", "tanh(x) = (eˣ − e⁻ˣ) / (eˣ + e⁻ˣ)",
                   "Like sigmoid but centred on 0, in (−1, 1). The classic choice inside recurrent layers.",
                   math.tanh, "torch.tanh({x})"),
    ActivationInfo("softmax", "softmax(z)ᵢ = e^zᵢ / Σⱼ e^zⱼ",
                   "Turns a vector of scores (logits) into probabilities that sum to 1: the output layer of a "
                   "classifier with one label per sample. It acts on the whole vector, not one number.",
                   _softmax_first, "torch.softmax({x}, dim={dim})", "Softmax",
                   "Plotted: the first probability of softmax([x, 1, 0]) as its logit x varies."),
    ActivationInfo("gelu", "gelu(x) = x · Φ(x)",
                   "A smooth relu (Φ is the standard normal CDF) used by transformers; it lets small negative "
                   "values through.",
                   lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), "nn.functional.gelu({x})"),
    ActivationInfo("leaky_relu", f"leaky_relu(x) = x if x > 0 else {LEAKY_SLOPE:g} · x",
                   "relu with a small slope for negative inputs, so no unit goes completely dead.",
                   lambda x: x if x > 0 else LEAKY_SLOPE * x,
                   f"nn.functional.leaky_relu({{x}}, {LEAKY_SLOPE:g})", "LeakyReLU",
                   f"Slope {LEAKY_SLOPE:g}, Keras 3's default (PyTorch's own default is 0.01)."),
    ActivationInfo("elu", "elu(x) = x if x > 0 else eˣ − 1",
                   "Smooth for negative inputs, which pushes mean activations toward 0 and can speed learning.",
                   lambda x: x if x > 0 else math.exp(x) - 1, "nn.functional.elu({x})", "ELU"),
    ActivationInfo("linear", "linear(x) = x",
                   "No activation. Right for regression outputs; between two Dense layers it adds nothing, since "
                   "two linear maps in a row are one linear map.",
                   lambda x: x, "{x}"),
]}
ActivationName = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]
# Activations a model may end in that the engine applies itself (the built module returns logits).
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def source(name: str, expression: str, dim: int = -1) -> str:
    """`expression` with the activation applied, as PyTorch source."""
    return ACTIVATIONS[name].source.format(x=expression, dim=dim)


def torch_module(name: str, dim: int = -1) -> nn.Module:
    """The module for an activation name; softmax acts on `dim` (channels for images)."""
    from torch import nn

    if name == "softmax":
        return nn.Softmax(dim=dim)
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    return {"linear": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "gelu": nn.GELU, "elu": nn.ELU}[name]()
