"""Classification metrics from predictions, matching scikit-learn (zero_division=0) exactly.

numpy only: the confusion matrix is one bincount, and everything else derives from it.
Undefined ratios (no predictions or no samples of a class) are 0, without warnings.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, pred] as an int64 (num_classes, num_classes) array."""
    flat = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, predicted + support)  # = 2PR/(P+R), and 0 where undefined
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def accuracy(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal (0 for an empty matrix)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def summarize(cm: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """accuracy, per_class rows, macro and weighted averages: the body of an evaluation event."""
    stats = per_class(cm)
    support = stats["support"]
    total = support.sum()
    rows = [
        {"class": name, "precision": float(stats["precision"][i]), "recall": float(stats["recall"][i]),
         "f1": float(stats["f1"][i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    ]
    keys = ("precision", "recall", "f1")
    macro = {k: float(stats[k].mean()) if len(class_names) else 0.0 for k in keys}
    weighted = {k: float((stats[k] * support).sum() / total) if total else 0.0 for k in keys}
    return {"accuracy": accuracy(cm), "confusion_matrix": cm.tolist(), "class_names": list(class_names),
            "per_class": rows, "macro": macro, "weighted": weighted}


# Misclassified test samples kept per wrong cell (the gallery pages through them), and in all: an
# evaluation travels to the server in one request, so with many wrong cells each keeps an even share.
KEEP_PER_CELL = 200
KEEP_TOTAL = 10_000


def misclassified(y_true: np.ndarray, y_pred: np.ndarray, limit: int = KEEP_PER_CELL,
                  total: int = KEEP_TOTAL) -> dict[str, list[int]]:
    """The first sample indices of each wrong (true, pred) cell, keyed "t,p": up to `limit` per cell and
    about `total` in all (never fewer than one per cell)."""
    wrong = np.flatnonzero(y_true != y_pred)
    cells: dict[str, list[int]] = {}
    for index in wrong.tolist():
        key = f"{int(y_true[index])},{int(y_pred[index])}"
        bucket = cells.setdefault(key, [])
        if len(bucket) < limit:
            bucket.append(index)
    if sum(len(bucket) for bucket in cells.values()) > total:
        share = max(1, total // len(cells))
        cells = {key: bucket[:share] for key, bucket in cells.items()}
    return cells
