"""Loss functions on the model's logits, and class scores for accuracy and metrics.

Models return logits; `output_activation` ("softmax" | "sigmoid" | None) names what the
spec's last layer would apply. Cross-entropy works on logits directly (stable, no double
softmax); MSE compares the activation's outputs with one-hot targets, as Keras does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from app.engine.types import EngineError

LossFn = Callable[..., torch.Tensor]
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_sample.mean() if reduction == "mean" else per_sample.sum() if reduction == "sum" else per_sample


def _activate(out: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(out.float(), dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(out.float())
    return out.float()


def _targets(y: torch.Tensor, num_outputs: int) -> torch.Tensor:
    # One output unit: a binary model whose output is P(class 1). Else one-hot over the outputs.
    if num_outputs == 1:
        return y.float().unsqueeze(1)
    return F.one_hot(y, num_outputs).float()


def make_loss(name: str, activation: str | None, num_classes: int, num_outputs: int) -> LossFn:
    """The loss `fn(logits, y, reduction="mean"|"sum"|"none")` for a model with `num_outputs` outputs."""
    if name not in LOSSES:
        raise EngineError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
    binary_single = num_outputs == 1 and num_classes == 2
    if num_outputs != num_classes and not binary_single:
        raise EngineError(f"the model has {num_outputs} outputs but the data set has {num_classes} classes: "
                          f"make the last layer Dense({num_classes})")
    if name == "cross_entropy":
        if binary_single:
            raise EngineError("cross_entropy needs one output per class; with a single sigmoid output use "
                              "binary_cross_entropy, or make the last layer Dense(2, softmax)")

        def cross_entropy(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
            return F.cross_entropy(out, y, reduction=reduction)

        return cross_entropy

    if name == "mse":

        def mse(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
            diff = _activate(out, activation) - _targets(y, num_outputs)
            return _reduce(diff.square().mean(dim=1), reduction)

        return mse

    def binary_cross_entropy(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        # One-vs-rest BCE per output unit, averaged over units. A softmax model is scored on its
        # softmax probabilities (what Keras would do); otherwise the logits go through a sigmoid.
        target = _targets(y, num_outputs)
        if activation == "softmax":
            logp = torch.log_softmax(out.float(), dim=1)
            log1m = torch.log1p(-logp.exp().clamp(max=1 - 1e-7))
            per_unit = -(target * logp + (1 - target) * log1m)
        else:
            per_unit = F.binary_cross_entropy_with_logits(out.float(), target, reduction="none")
        return _reduce(per_unit.mean(dim=1), reduction)

    return binary_cross_entropy


def class_scores(out: torch.Tensor) -> torch.Tensor:
    """(N, classes) scores whose argmax/top-k are the predictions; a single logit becomes [-z, z]."""
    return torch.cat([-out, out], dim=1) if out.shape[1] == 1 else out


def predictions(out: torch.Tensor) -> torch.Tensor:
    """Predicted class indices from logits (argmax; a single logit: z > 0)."""
    return (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(dim=1)
