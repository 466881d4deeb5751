"""Evaluate a model on one split: loss, predictions, top-k, then the metrics of an evaluation event."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from app.engine import metrics
from app.engine.data import DeviceData
from app.engine.losses import LossFn, class_scores, predictions


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, split: str, loss_fn: LossFn, *, epoch: int, top_k: int,
             batch_size: int, autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             with_misclassified: bool = False) -> dict[str, Any] | None:
    """The payload of an evaluation event for `split`, or None when the split is empty."""
    n = data.size(split)
    if n == 0:
        return None
    was_training = model.training
    model.eval()
    num_classes = len(data.class_names)
    # Top-k with k >= the number of classes is 100% whatever the model does: not a metric, so none.
    k = top_k if top_k < num_classes else None
    loss_sum = torch.zeros((), device=data.device)
    top_k_hits = torch.zeros((), dtype=torch.long, device=data.device)
    preds = []
    for xb, yb, _ in data.eval_batches(split, batch_size):
        with autocast():
            out = model(xb)
        out = out.float()
        loss_sum += loss_fn(out, yb, reduction="sum")
        scores = class_scores(out)
        if k is not None:
            top_k_hits += (scores.topk(k, dim=1).indices == yb[:, None]).any(dim=1).sum()
        preds.append(predictions(out))
    model.train(was_training)
    # One host sync for the whole split.
    y_pred = torch.cat(preds).cpu().numpy()
    y_true = data.splits[split][1].cpu().numpy()
    loss, hits = loss_sum.item(), top_k_hits.item()
    cm = metrics.confusion_matrix(y_true, y_pred, num_classes)
    payload = {"split": split, "epoch": epoch, "loss": loss / n, **metrics.summarize(cm, data.class_names),
               "top_k": k, "top_k_accuracy": hits / n if k is not None else None}
    if with_misclassified:
        payload["misclassified"] = metrics.misclassified(y_true, y_pred)
    return payload


def eval_batch_size(train_batch_size: int) -> int:
    """Evaluation needs no gradients, so bigger batches fit: fewer, better-filled kernel launches."""
    return max(train_batch_size, 512)

