"""Tiny real models on real (small) data: they learn, and their metrics agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from tests.engine.engine_testing import LSTM_SPEC, dataset, mlp_spec, run


def _check_against_sklearn(evaluation: dict, y_true: np.ndarray) -> None:
    cm = np.asarray(evaluation["confusion_matrix"])
    # Rebuild predictions from the matrix rows: sklearn must see the same confusion matrix.
    y_pred = np.concatenate([np.repeat(np.arange(len(cm)), cm[t]) for t in range(len(cm))])
    y_sorted = np.concatenate([np.full(cm[t].sum(), t) for t in range(len(cm))])
    assert np.array_equal(np.bincount(y_true, minlength=len(cm)), cm.sum(axis=1))
    labels = list(range(len(cm)))
    assert evaluation["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())  # the matrix agrees with the accuracy
    p, r, f, s = precision_recall_fscore_support(y_sorted, y_pred, labels=labels, zero_division=0)
    rows = evaluation["per_class"]
    assert np.allclose([row["precision"] for row in rows], p)
    assert np.allclose([row["recall"] for row in rows], r)
    assert np.allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == list(s)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_sorted, y_pred, labels=labels, average=average,
                                                     zero_division=0)
        assert np.allclose([evaluation[average][k] for k in ("precision", "recall", "f1")], [p, r, f])


def test_digits_mlp_learns_and_metrics_match_sklearn(tmp_path):
    data = dataset("digits", tmp_path)
    result, sink = run(tmp_path, mlp_spec(64), data, epochs=8, batch_size=32)
    assert result.test_accuracy > 0.9
    test = sink.of("evaluation")[-1]
    assert test["split"] == "test" and test["accuracy"] == result.test_accuracy
    _check_against_sklearn(test, data.y_test)
    assert sum(len(v) for v in test["misclassified"].values()) == round((1 - test["accuracy"]) * len(data.y_test))
    for key, indices in test["misclassified"].items():
        t, p = map(int, key.split(","))
        assert t != p and all(data.y_test[i] == t for i in indices) and len(indices) <= 200
    epochs = sink.of("epoch")
    assert [e["epoch"] for e in epochs] == list(range(1, 9)) and epochs[-1]["epochs"] == 8
    assert epochs[-1]["train_accuracy"] > epochs[0]["train_accuracy"]
    assert len(sink.of("checkpoint")) == 8 and sink.of("memory")[-1]["peak_bytes"] > 0


def test_moons_mlp_learns(tmp_path):
    result, sink = run(tmp_path, mlp_spec(16, classes=2), dataset("moons", tmp_path), epochs=10,
                       batch_size=32, optimizer={"name": "adam", "lr": 0.01})
    assert result.test_accuracy > 0.95
    val = [e for e in sink.of("evaluation") if e["split"] == "val"]
    # Top-5 (the default k) of 2 classes is 100% whatever the model does: not recorded as a metric.
    assert len(val) == 10 and val[-1]["top_k"] is None and val[-1]["top_k_accuracy"] is None


def test_sequence_lstm_learns_order(tmp_path):
    result, _ = run(tmp_path, LSTM_SPEC, dataset("sequence", tmp_path), epochs=6, batch_size=32,
                    optimizer={"name": "adam", "lr": 0.01})
    assert result.test_accuracy > 0.85
