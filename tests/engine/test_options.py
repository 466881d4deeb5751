"""Every training setting changes what happens: each test would fail if its setting were ignored."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.build import build_model
from app.engine.runtime import seed_everything
from app.engine.types import EngineError
from tests.engine.engine_testing import dataset, mlp_spec, run, subset


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    return subset(dataset("moons", tmp_path_factory.mktemp("data")), 600, 200)


def _last_weights(tmp_path, name="run") -> dict[str, torch.Tensor]:
    latest = sorted((tmp_path / name / "ckpt").glob("epoch-*.pt"))[-1]
    return torch.load(latest, weights_only=True)["model"]


def _weight_norm(state: dict[str, torch.Tensor]) -> float:
    return sum(float(t.square().sum()) for t in state.values() if t.ndim >= 2)


OPTIMIZERS = [
    {"name": "sgd", "lr": 0.1},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"name": "adam", "lr": 0.01},
    {"name": "adamw", "lr": 0.01, "weight_decay": 0.5},
    {"name": "rmsprop", "lr": 0.01},
]


def test_every_optimizer_learns_differently(tmp_path, moons):
    losses = []
    for i, optimizer in enumerate(OPTIMIZERS):
        result, sink = run(tmp_path, mlp_spec(16, 2), moons, name=f"o{i}", epochs=3, optimizer=optimizer)
        assert result.test_accuracy > 0.8, optimizer
        losses.append(sink.of("epoch")[-1]["train_loss"])
    assert len(set(losses)) == len(OPTIMIZERS)  # momentum, nesterov, decay... all change the run


def test_batch_size_one(tmp_path, moons):
    result, sink = run(tmp_path, mlp_spec(8, 2), subset(moons, 100), epochs=1, batch_size=1,
                       optimizer={"name": "sgd", "lr": 0.05})
    assert sink.of("epoch")[0]["step"] == 100 and result.test_accuracy > 0.7


def test_bad_optimizer_settings_are_engine_errors(tmp_path, moons):
    with pytest.raises(EngineError, match="nesterov"):
        run(tmp_path, mlp_spec(8, 2), moons, optimizer={"name": "sgd", "nesterov": True})
    with pytest.raises(EngineError, match="unknown optimizer"):
        run(tmp_path, mlp_spec(8, 2), moons, optimizer={"name": "lbfgs"})
    with pytest.raises(EngineError, match="no setting"):
        run(tmp_path, mlp_spec(8, 2), moons, optimizer={"name": "adam", "momentum": 0.9})


@pytest.mark.parametrize(("loss", "activation", "units"), [
    ("cross_entropy", "softmax", 2), ("mse", "softmax", 2), ("binary_cross_entropy", "sigmoid", 2),
    ("binary_cross_entropy", "sigmoid", 1), ("binary_cross_entropy", "softmax", 2)])
def test_losses_train(tmp_path, moons, loss, activation, units):
    result, sink = run(tmp_path, mlp_spec(16, units, activation), moons, epochs=4, loss=loss,
                       optimizer={"name": "adam", "lr": 0.02})
    assert result.test_accuracy > 0.8
    first = sink.of("epoch")[0]["train_loss"]
    if loss == "mse":
        assert first < 0.5  # a mean of squared probability errors, not a cross-entropy
    if loss == "cross_entropy":
        assert first > 0.2


def test_loss_values_differ_by_loss(tmp_path, moons):
    # Binary cross-entropy on a 2-way softmax equals cross-entropy (mathematically), so it gets
    # the one-unit sigmoid head it is meant for.
    heads = {"cross_entropy": mlp_spec(16, 2), "mse": mlp_spec(16, 2),
             "binary_cross_entropy": mlp_spec(16, 1, "sigmoid")}
    values = {loss: run(tmp_path, spec, moons, name=loss, epochs=1, loss=loss)[0].test_loss
              for loss, spec in heads.items()}
    assert len(set(values.values())) == 3, values


def test_single_output_needs_binary_loss(tmp_path, moons):
    with pytest.raises(EngineError, match="binary_cross_entropy"):
        run(tmp_path, mlp_spec(8, 1, "sigmoid"), moons, loss="cross_entropy")
    with pytest.raises(EngineError, match="Dense\\(2\\)"):
        run(tmp_path, mlp_spec(8, 3), moons)


def _lrs(sink) -> list[float]:
    return [e["lr"] for e in sink.of("epoch")]


def test_step_schedule(tmp_path, moons):
    _, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=5, optimizer={"name": "sgd", "lr": 0.1},
                  schedule={"name": "step", "step_size": 2, "gamma": 0.5})
    assert _lrs(sink) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_schedule(tmp_path, moons):
    _, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=4, optimizer={"name": "sgd", "lr": 0.1},
                  schedule={"name": "cosine", "eta_min": 0.01})
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert _lrs(sink) == pytest.approx(expected)


def test_plateau_schedule_cuts_lr_when_stuck(tmp_path, moons):
    # A learning rate too small to move val_loss: every epoch is a plateau.
    _, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=4, optimizer={"name": "sgd", "lr": 1e-6},
                  schedule={"name": "plateau", "monitor": "val_loss", "factor": 0.5, "patience": 0})
    assert _lrs(sink) == pytest.approx([1e-6, 1e-6, 5e-7, 2.5e-7], rel=1e-9)


def test_early_stopping_stops(tmp_path, moons):
    result, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=20, optimizer={"name": "sgd", "lr": 1e-9},
                       early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 0.01})
    assert result.stopped_early and result.epochs_completed == 3 and len(sink.of("epoch")) == 3
    assert result.best_epoch == 1


def test_early_stopping_patience_zero_stops_at_the_first_epoch_without_improvement(tmp_path, moons):
    # As Keras's patience=0: epochs that improve go on (lr 0.02 improves for a while), the first that
    # does not stops the run; it never stops right after an improving epoch.
    result, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=30, optimizer={"name": "adam", "lr": 0.02},
                       early_stopping={"monitor": "val_loss", "patience": 0})
    losses = [e["val_loss"] for e in sink.of("epoch")]
    assert len(losses) >= 2
    assert all(later < earlier for earlier, later in zip(losses[:-2], losses[1:-1], strict=True))
    assert result.stopped_early and losses[-1] >= min(losses[:-1])


def test_early_stopping_restore_best(tmp_path, moons):
    # min_delta so large that only epoch 1 counts as an improvement: stop at 3, best is 1.
    early = {"monitor": "val_loss", "patience": 2, "min_delta": 100.0}
    restored, _ = run(tmp_path, mlp_spec(8, 2), moons, name="a", epochs=10, optimizer={"name": "adam", "lr": 0.02},
                      early_stopping={**early, "restore_best": True})
    kept, _ = run(tmp_path, mlp_spec(8, 2), moons, name="b", epochs=10, optimizer={"name": "adam", "lr": 0.02},
                  early_stopping=early)
    one_epoch, _ = run(tmp_path, mlp_spec(8, 2), moons, name="c", epochs=1, optimizer={"name": "adam", "lr": 0.02})
    assert restored.epochs_completed == kept.epochs_completed == 3 and restored.best_epoch == 1
    assert restored.test_loss == pytest.approx(one_epoch.test_loss, rel=1e-6)
    assert kept.test_loss != pytest.approx(one_epoch.test_loss, rel=1e-3)


def test_l2_shrinks_weights(tmp_path, moons):
    run(tmp_path, mlp_spec(32, 2), moons, name="plain", epochs=3, optimizer={"name": "adam", "lr": 0.01})
    run(tmp_path, mlp_spec(32, 2), moons, name="l2", epochs=3, l2=0.01, optimizer={"name": "adam", "lr": 0.01})
    assert _weight_norm(_last_weights(tmp_path, "l2")) < 0.7 * _weight_norm(_last_weights(tmp_path, "plain"))


def test_grad_clip_bounds_updates(tmp_path, moons):
    tiny = subset(moons, 64)  # 2 steps of SGD(lr=1): each moves weights by at most lr * clip
    seed_everything(0)
    initial = build_model(mlp_spec(16, 2), [2]).state_dict()

    def distance(name: str) -> float:
        final = _last_weights(tmp_path, name)
        return math.sqrt(sum(float((final[k] - initial[k]).square().sum()) for k in initial))

    run(tmp_path, mlp_spec(16, 2), tiny, name="clipped", epochs=1, grad_clip=0.01, optimizer={"name": "sgd", "lr": 1.0})
    run(tmp_path, mlp_spec(16, 2), tiny, name="free", epochs=1, optimizer={"name": "sgd", "lr": 1.0})
    assert distance("clipped") <= 2 * 0.01 + 1e-6
    assert distance("free") > 0.1
