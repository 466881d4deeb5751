"""The learning-rate range test on real data: the seed MLP (preset mnist-mlp, fitted to digits) with Adam."""

from __future__ import annotations

import math

import pytest

from app.architectures import presets
from app.datasets import registry
from app.engine.lr_finder import DIVERGE_FACTOR, centred_average, range_test, suggest
from app.engine.types import EngineError, TrainConfig
from tests.engine.engine_testing import dataset


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return dataset("digits", data_dir), presets.model_for("mnist-mlp", registry.get_dataset_info("digits", data_dir))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_suggestion_for_adam_on_digits_is_within_10x_of_1e_3(digits, seed):
    data, spec = digits
    config = TrainConfig(seed=seed, batch_size=32, device="cpu", optimizer={"name": "adam", "lr": 0.001})
    seen = []
    result = range_test(spec, config, data, steps=200, on_point=seen.append)
    assert 1e-4 <= result["suggestion"] <= 1e-2, result["suggestion"]
    points = result["points"]
    assert seen == points and len(points) == result["steps"] <= 200
    lrs = [p["lr"] for p in points]
    assert lrs[0] == pytest.approx(1e-7)
    assert all(b / a == pytest.approx(lrs[1] / lrs[0]) for a, b in zip(lrs, lrs[1:], strict=False))  # exponential
    assert result["stopped"] in ("end", "diverged")
    if result["stopped"] == "end":
        assert lrs[-1] == pytest.approx(10.0)
    # Deterministic: the same seed gives the same curve and the same suggestion.
    again = range_test(spec, config, data, steps=200)
    assert again["suggestion"] == result["suggestion"] and [p["raw"] for p in again["points"]] == [p["raw"] for p in points]


def test_the_search_stops_when_the_loss_explodes(digits):
    data, spec = digits
    # SGD at rates up to 1e4 blows the loss up long before the end.
    config = TrainConfig(seed=0, batch_size=32, device="cpu", optimizer={"name": "sgd", "lr": 0.01})
    result = range_test(spec, config, data, steps=150, end_lr=1e4)
    assert result["stopped"] == "diverged" and result["steps"] < 150
    last, best = result["points"][-1]["loss"], min(p["loss"] for p in result["points"])
    assert not math.isfinite(result["points"][-1]["raw"]) or last > DIVERGE_FACTOR * best


def test_the_rule_picks_the_steepest_descent_before_the_minimum():
    # A loss that falls fastest at lr 1e-3 (log10 = -3), bottoms out at 1e-1, then climbs.
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]

    def loss(lr: float) -> float:
        x = math.log10(lr)
        return 2.0 - 1.5 / (1 + math.exp(-3 * (x + 3))) + (max(0.0, x + 1) ** 2)

    points = [{"lr": lr, "raw": loss(lr), "loss": loss(lr)} for lr in lrs]
    assert 10 ** -3.2 <= suggest(points) <= 10 ** -2.8
    assert suggest([{"lr": lr, "raw": 1.0 + i, "loss": 1.0} for i, lr in enumerate(lrs)]) is None  # never fell
    assert suggest(points[:6]) is None  # too few points to judge
    assert centred_average([1.0, 1.0, 4.0, 1.0, 1.0]) == pytest.approx([1.0, 2.0, 2.0, 2.0, 1.0])


def test_bounds_are_checked_before_any_work(digits):
    data, spec = digits
    with pytest.raises(EngineError, match="steps"):
        range_test(spec, TrainConfig(device="cpu"), data, steps=5000)
    with pytest.raises(EngineError, match="grow"):
        range_test(spec, TrainConfig(device="cpu"), data, start_lr=1.0, end_lr=1e-3)
