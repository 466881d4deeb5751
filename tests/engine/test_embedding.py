"""The test-set projection a trained run emits: the penultimate layer's activations in 2-D (PCA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.build import build_model
from app.engine.data import DeviceData
from app.engine.embedding import MAX_SAMPLES, final_linear, project_test_split
from tests.engine.engine_testing import LSTM_SPEC, dataset, mlp_spec, run


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return dataset("digits", tmp_path_factory.mktemp("data"))


def test_a_trained_run_emits_the_projection_of_its_whole_test_split(tmp_path, digits):
    _, sink = run(tmp_path, mlp_spec(units=24), digits, epochs=2, batch_size=32, seed=3)
    kinds = [kind for kind, _ in sink.events]
    assert kinds.count("projection") == 1 and kinds.index("projection") > kinds.index("evaluation")
    [event] = sink.of("projection")
    [test] = [e for e in sink.of("evaluation") if e["split"] == "test"]
    total = len(digits.y_test)
    assert total < MAX_SAMPLES and event["count"] == event["total"] == total
    assert all(len(event[column]) == total for column in ("x", "y", "true", "pred", "index"))
    assert event["index"] == list(range(total)) and event["true"] == digits.y_test.tolist()
    assert event["features"] == 24 and event["layer"] == 2  # the input of the last Dense (spec layer 2)
    assert event["class_names"] == digits.class_names
    # The predictions are the model's: exactly the test evaluation's mistakes, and its accuracy.
    wrong = {i for i, (t, p) in enumerate(zip(event["true"], event["pred"], strict=True)) if t != p}
    kept = {i for indices in test["misclassified"].values() for i in indices}
    assert kept <= wrong and len(wrong) == round((1 - test["accuracy"]) * total)
    # PCA: centred coordinates, the first axis holds the most variance, rounded to 4 significant digits.
    x, y = np.array(event["x"]), np.array(event["y"])
    assert abs(x.mean()) < 1e-2 * x.std() and abs(y.mean()) < 1e-2 * y.std() and x.var() >= y.var() > 0
    pc1, pc2 = event["explained_variance"]
    assert 1 >= pc1 >= pc2 > 0 and pc1 + pc2 <= 1
    assert all(float(f"{v:.4g}") == v for v in event["x"][:50])
    # Trained, the classes gather: a sample's nearest neighbour in 2-D shares its class far above chance (1 in 10).
    points, labels = np.stack([x, y], axis=1), np.array(event["true"])
    distances = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).mean() > 0.25


def test_a_large_test_split_is_sampled_down_to_the_bound(digits):
    model = build_model(mlp_spec(units=16), digits.input_shape)
    data = DeviceData(digits, torch.device("cpu"))
    payload = project_test_split(model, data, epoch=1, max_samples=50, seed=7)
    assert payload["count"] == 50 and payload["total"] == len(digits.y_test)
    assert payload["index"] == sorted(set(payload["index"])) and max(payload["index"]) < payload["total"]
    assert payload["true"] == digits.y_test[payload["index"]].tolist()
    assert project_test_split(model, data, epoch=1, max_samples=50, seed=7) == payload  # deterministic
    assert project_test_split(model, data, epoch=1, max_samples=10**9)["count"] == len(digits.y_test)  # capped


def test_models_without_a_dense_layer_or_test_samples_emit_nothing(digits):
    flat = torch.nn.Sequential(torch.nn.Flatten())
    assert final_linear(flat) is None
    data = DeviceData(digits, torch.device("cpu"))
    assert project_test_split(flat, data, epoch=1) is None
    model = build_model(LSTM_SPEC, [6, 2])
    linear, index = final_linear(model)
    assert index == 1 and linear.out_features == 2
