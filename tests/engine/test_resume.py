"""Reproducibility, resume-from-checkpoint, fork, divergence and cancellation."""

from __future__ import annotations

import pytest
import torch

from app.engine.types import DivergedError, EngineError, StoppedError
from tests.engine.engine_testing import dataset, mlp_spec, run, subset

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 24, "activation": "relu"},
                   {"type": "Dropout", "rate": 0.3},  # exercises the RNG state in checkpoints
                   {"type": "Dense", "units": 10, "activation": "softmax"}]}
CONFIG = {"epochs": 4, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.005},
          "schedule": {"name": "cosine"}, "early_stopping": {"monitor": "val_loss", "patience": 10}}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return subset(dataset("digits", tmp_path_factory.mktemp("data")), 400, 120)


def _outcome(result, sink) -> tuple:
    return ([(e["epoch"], e["train_loss"], e["val_loss"], e["lr"]) for e in sink.of("epoch")],
            result.test_loss, result.test_accuracy, sink.of("evaluation")[-1]["confusion_matrix"])


def test_same_seed_same_run(tmp_path, digits):
    first = _outcome(*run(tmp_path, SPEC, digits, name="a", **CONFIG))
    second = _outcome(*run(tmp_path, SPEC, digits, name="b", **CONFIG))
    other = _outcome(*run(tmp_path, SPEC, digits, name="c", **{**CONFIG, "seed": 1}))
    assert first == second
    assert first[0] != other[0]


def test_resume_equals_uninterrupted(tmp_path, digits):
    full = _outcome(*run(tmp_path, SPEC, digits, name="full", **CONFIG))

    def stop_after_two_epochs() -> bool:
        return len(interrupted_sink.of("epoch")) >= 2

    from app.engine.types import ListSink

    interrupted_sink = ListSink()
    with pytest.raises(StoppedError):
        run(tmp_path, SPEC, digits, name="cut", sink=interrupted_sink, should_stop=stop_after_two_epochs, **CONFIG)
    checkpoint = tmp_path / "cut" / "ckpt" / "epoch-0002.pt"
    assert not (tmp_path / "cut" / "ckpt" / "epoch-0003.pt").exists()
    result, sink = run(tmp_path, SPEC, digits, name="resumed", resume_from=checkpoint, **CONFIG)
    resumed = _outcome(result, sink)
    assert [e[0] for e in resumed[0]] == [3, 4]
    assert full[0][2:] == resumed[0] and full[1:] == resumed[1:]
    assert result.epochs_completed == 4


def test_fork_with_changed_lr(tmp_path, digits):
    run(tmp_path, SPEC, digits, name="parent", **{**CONFIG, "epochs": 3})
    fresh_result, fresh = run(tmp_path, SPEC, digits, name="fresh", **{**CONFIG, "epochs": 1})
    checkpoint = tmp_path / "parent" / "ckpt" / "epoch-0003.pt"
    config = {**CONFIG, "epochs": 2, "optimizer": {"name": "adam", "lr": 0.001}, "schedule": None}
    result, sink = run(tmp_path, SPEC, digits, name="fork", resume_from=checkpoint, fork=True, **config)
    epochs = sink.of("epoch")
    assert [e["epoch"] for e in epochs] == [1, 2] and [e["lr"] for e in epochs] == [0.001, 0.001]
    # It starts from the parent's trained weights, far ahead of a fresh first epoch.
    assert epochs[0]["train_loss"] < 0.7 * fresh.of("epoch")[0]["train_loss"]
    saved = torch.load(tmp_path / "fork" / "ckpt" / "epoch-0002.pt", weights_only=True)
    assert saved["optimizer"]["param_groups"][0]["lr"] == 0.001


def test_fork_into_other_architecture_is_refused(tmp_path, digits):
    run(tmp_path, SPEC, digits, name="parent", **{**CONFIG, "epochs": 1})
    with pytest.raises(EngineError, match="do not fit"):
        run(tmp_path, mlp_spec(48), digits, name="fork", resume_from=tmp_path / "parent" / "ckpt" / "epoch-0001.pt",
            fork=True, epochs=1)


def test_missing_checkpoint(tmp_path, digits):
    with pytest.raises(EngineError, match="does not exist"):
        run(tmp_path, SPEC, digits, resume_from=tmp_path / "nope.pt", epochs=1)


def test_divergence_is_reported_with_epoch_and_step(tmp_path, digits):
    with pytest.raises(DivergedError, match=r"^diverged at epoch 1, step \d+$"):
        # Linear outputs under MSE: the gradient grows with the weights, so lr=1000 explodes.
        run(tmp_path, mlp_spec(32, activation="linear"), digits, epochs=3, loss="mse",
            optimizer={"name": "sgd", "lr": 1000.0})


def test_should_stop_stops_promptly(tmp_path, digits):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 5

    with pytest.raises(StoppedError, match="epoch 1, step 4"):
        _, sink = run(tmp_path, mlp_spec(32), digits, epochs=50, should_stop=should_stop)
    assert len(calls) == 5
    assert not (tmp_path / "run" / "ckpt").exists()


def test_keep_checkpoints_keeps_the_last_n_and_the_best(tmp_path, digits):
    config = {**CONFIG, "epochs": 6, "early_stopping": None, "keep_checkpoints": 2}
    result, sink = run(tmp_path, SPEC, digits, name="pruned", **config)
    val_losses = {e["epoch"]: e["val_loss"] for e in sink.of("epoch")}
    best = min(val_losses, key=val_losses.get)
    kept = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "pruned" / "ckpt").glob("epoch-*.pt"))
    assert kept == sorted({5, 6, best})
    run(tmp_path, SPEC, digits, name="all", **{**config, "keep_checkpoints": 0})
    assert len(list((tmp_path / "all" / "ckpt").glob("epoch-*.pt"))) == 6  # the default keeps every epoch
