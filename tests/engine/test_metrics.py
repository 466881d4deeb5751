"""metrics.py agrees with scikit-learn on the same predictions, warning-free where ratios are undefined."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from app.engine import metrics
from app.engine.data import DeviceData
from app.engine.types import DatasetArrays, input_normalization


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = 6
    y_true = rng.integers(0, classes - 1, 300)  # the last class never occurs...
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, classes, 300))
    y_pred[y_pred == 2] = 3  # ...and class 2 is never predicted: zero_division paths
    labels = list(range(classes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm = metrics.confusion_matrix(y_true, y_pred, classes)
        summary = metrics.summarize(cm, [f"c{i}" for i in labels])
    assert np.array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=labels))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    rows = summary["per_class"]
    assert np.allclose([x["precision"] for x in rows], p) and np.allclose([x["recall"] for x in rows], r)
    assert np.allclose([x["f1"] for x in rows], f) and [x["support"] for x in rows] == list(s)
    for average in ("macro", "weighted"):
        expected = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                       zero_division=0)[:3]
        assert np.allclose([summary[average][k] for k in ("precision", "recall", "f1")], expected)
    assert summary["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_the_engines_top_k_matches_sklearn(k):
    """The evaluation's top-k accuracy, computed on the device, against sklearn on the same scores."""
    from torch import nn

    from app.engine.evaluate import evaluate
    from app.engine.losses import make_loss

    rng = np.random.default_rng(k)
    scores = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 5, 200)
    arrays = DatasetArrays("scores", scores, y, scores[:0], y[:0], scores, y, [str(c) for c in range(5)], [5])
    data = DeviceData(arrays, torch.device("cpu"), normalize="scale")  # the model sees the scores as they are
    payload = evaluate(nn.Identity(), data, "test", make_loss("cross_entropy", None, 5, 5), epoch=1, top_k=k,
                       batch_size=64)
    assert payload["top_k"] == k
    assert payload["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, scores, k=k, labels=list(range(5))))


@pytest.mark.parametrize("k", [5, 20])
def test_top_k_of_as_many_classes_or_more_is_no_metric(k):
    """Top-5 of 5 classes is 100% for any model: the evaluation records none rather than a false 100%."""
    from torch import nn

    from app.engine.evaluate import evaluate
    from app.engine.losses import make_loss

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 5)).astype(np.float32)
    y = rng.integers(0, 5, 50)
    arrays = DatasetArrays("scores", scores, y, scores[:0], y[:0], scores, y, [str(c) for c in range(5)], [5])
    data = DeviceData(arrays, torch.device("cpu"), normalize="scale")
    payload = evaluate(nn.Identity(), data, "test", make_loss("cross_entropy", None, 5, 5), epoch=1, top_k=k,
                       batch_size=64)
    assert payload["top_k"] is None and payload["top_k_accuracy"] is None
    assert payload["accuracy"] == pytest.approx(float((scores.argmax(1) == y).mean()))


def test_misclassified_cells():
    y_true = np.array([0] * 230 + [1, 1])
    y_pred = np.array([1] * 230 + [1, 0])
    cells = metrics.misclassified(y_true, y_pred)
    assert cells == {"0,1": list(range(metrics.KEEP_PER_CELL)), "1,0": [231]}  # the first 200 of a cell's 230


def test_misclassified_keeps_an_even_share_when_there_are_too_many():
    y_true = np.repeat(np.arange(10), 100)
    y_pred = (y_true + np.tile(np.arange(1, 11), 100) % 10) % 10  # 90 wrong cells of 10 samples
    cells = metrics.misclassified(y_true, y_pred, limit=50, total=300)
    assert len(cells) == 90 and all(len(bucket) == 300 // 90 for bucket in cells.values())
    assert all(all(y_true[i] == int(key.split(",")[0]) for i in bucket) for key, bucket in cells.items())


def _arrays(x: np.ndarray, mean, std) -> DatasetArrays:
    y = np.arange(len(x)) % 3
    return DatasetArrays("t", x, y, x[:4], y[:4], x[:5], y[:5], ["a", "b", "c"], list(x.shape[1:]), mean, std)


@pytest.mark.parametrize("chunk", [4096, 20, 3])
def test_batches_cover_each_sample_once_in_one_permutation_normalized(monkeypatch, chunk):
    monkeypatch.setattr("app.engine.data.CHUNK_SAMPLES", chunk)  # 3 < batch size: one batch per chunk
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4)).astype(np.uint8)
    arrays = _arrays(x, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    data = DeviceData(arrays, torch.device("cpu"), normalize="standardize")
    assert data.splits["train"][0].dtype == torch.uint8  # stored as 8 bits, normalized per chunk
    expected = (torch.from_numpy(x).float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    batches = list(data.train_batches(16, torch.Generator().manual_seed(0)))
    assert [n for *_, n in batches] == [16, 16, 16, 2]
    xs = torch.cat([b[0] for b in batches])
    ys = torch.cat([b[1] for b in batches])
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ys, torch.from_numpy(arrays.y_train)[order])
    assert torch.allclose(xs, expected[order], atol=1e-5)
    evaluated = torch.cat([b[0] for b in data.eval_batches("test", 2)])
    assert torch.allclose(evaluated, expected[:5], atol=1e-5)
    assert torch.equal(data.splits["train"][0], torch.from_numpy(x))  # normalizing never touches the store


def _train_inputs(data: DeviceData) -> torch.Tensor:
    return torch.cat([x for x, _, _ in data.train_batches(64, torch.Generator().manual_seed(0))])


def test_auto_scales_images_to_unit_range_and_standardizes_features():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 1, 4, 4)).astype(np.uint8)
    images = _arrays(pixels, [0.5], [0.2])
    for mode in ("auto", "scale"):  # the Keras tutorials' x / 255
        xs = _train_inputs(DeviceData(images, torch.device("cpu"), normalize=mode))
        assert xs.min() >= 0 and xs.max() <= 1 and xs.max() > 0.9
    standardized = _train_inputs(DeviceData(images, torch.device("cpu"), normalize="standardize"))
    assert standardized.min() < -2 and standardized.max() > 2  # (x/255 - 0.5) / 0.2

    features = np.random.default_rng(1).normal(100.0, 5.0, (50, 3)).astype(np.float32)
    columns = _arrays(features, features.mean(0).tolist(), features.std(0).tolist())
    for mode in ("auto", "standardize"):
        xs = _train_inputs(DeviceData(columns, torch.device("cpu"), normalize=mode))
        assert abs(float(xs.mean())) < 0.1 and abs(float(xs.std()) - 1) < 0.1
    assert float(_train_inputs(DeviceData(columns, torch.device("cpu"), normalize="scale")).mean()) > 90


def test_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="normalize must be one of auto, scale, standardize"):
        input_normalization("minmax", [1, 28, 28], [0.1], [0.3])


def test_max_train_samples():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    data = DeviceData(_arrays(x, None, None), torch.device("cpu"), max_train_samples=10)
    assert data.size("train") == 10 and data.size("test") == 5
