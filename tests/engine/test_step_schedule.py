"""The per-step schedules (app/engine/optim.py StepSchedule): a linear warm-up with any schedule and
`warmup_cosine`. Each test records the learning rate every optimizer step really used."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

import app.engine.loop as loop
from app.runs.schemas import TrainConfigIn
from tests.engine.engine_testing import dataset, mlp_spec, run, subset

STEPS_PER_EPOCH = 6  # 600 training samples, batch 100


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    return subset(dataset("moons", tmp_path_factory.mktemp("data")), 600, 100)


@pytest.fixture
def used_lrs(monkeypatch):
    """The learning rate of each optimizer step, as the optimizer saw it when it stepped."""
    seen: list[float] = []
    make = loop.make_optimizer

    def recording(params, settings, device):
        optimizer = make(params, settings, device)
        if len(list(params)) > 1:  # not the one-weight warm-up of the process
            optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(loop, "make_optimizer", recording)
    return seen


def _train(tmp_path, moons, epochs, schedule, **kwargs):
    return run(tmp_path, mlp_spec(8, 2), moons, epochs=epochs, batch_size=100, val_split=0.0,
               optimizer={"name": "sgd", "lr": 0.1}, schedule=schedule, **kwargs)


def test_warmup_rises_linearly_then_holds(tmp_path, moons, used_lrs):
    _, sink = _train(tmp_path, moons, 2, {"name": "warmup", "warmup_steps": 4})
    assert used_lrs == pytest.approx([0.025, 0.05, 0.075, 0.1] + [0.1] * 8)
    # the epoch events report the scheduled rate, never a scaled one left behind
    assert [e["lr"] for e in sink.of("epoch")] == pytest.approx([0.1, 0.1])


def test_warmup_cosine_decays_step_by_step_to_zero(tmp_path, moons, used_lrs):
    _train(tmp_path, moons, 2, {"name": "warmup_cosine", "warmup_steps": 2})
    total, warm = 2 * STEPS_PER_EPOCH, 2
    expected = [0.05, 0.1] + [0.05 * (1 + math.cos(math.pi * (k - warm) / (total - warm))) for k in range(warm, total)]
    assert used_lrs == pytest.approx(expected)
    assert used_lrs[2] == pytest.approx(0.1) and used_lrs[-1] < 0.005
    assert all(a > b for a, b in zip(used_lrs[2:], used_lrs[3:], strict=False))


def test_warmup_across_an_epoch_boundary_scales_the_epoch_schedule(tmp_path, moons, used_lrs):
    # Step decay halves the rate after epoch 1 while the 8-step warm-up is still on: the step schedule
    # must halve 0.1 (not a warm-up fraction of it) and the warm-up then scales 0.05.
    _, sink = _train(tmp_path, moons, 2, {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_steps": 8})
    expected = [0.1 * (k + 1) / 8 for k in range(6)] + [0.05 * 7 / 8, 0.05] + [0.05] * 4
    assert used_lrs == pytest.approx(expected)
    assert [e["lr"] for e in sink.of("epoch")] == pytest.approx([0.1, 0.05])


def test_a_resumed_run_carries_on_with_its_warmup(tmp_path, moons, used_lrs):
    schedule = {"name": "warmup", "warmup_steps": 9}
    _train(tmp_path, moons, 1, schedule, name="first")
    checkpoint = sorted((tmp_path / "first" / "ckpt").glob("epoch-*.pt"))[-1]
    used_lrs.clear()
    _train(tmp_path, moons, 2, schedule, name="first", resume_from=checkpoint)
    assert used_lrs == pytest.approx([0.1 * 7 / 9, 0.1 * 8 / 9, 0.1, 0.1, 0.1, 0.1])


def test_the_schema_checks_the_warmup():
    with pytest.raises(ValidationError, match="warm-up steps"):
        TrainConfigIn.model_validate({"schedule": {"name": "warmup"}})
    with pytest.raises(ValidationError, match="less than or equal to 100000"):
        TrainConfigIn.model_validate({"schedule": {"name": "cosine", "warmup_steps": 10**9}})
    config = TrainConfigIn.model_validate({"schedule": {"name": "warmup_cosine", "warmup_steps": 50}})
    assert config.to_engine_dict()["schedule"] == {"name": "warmup_cosine", "warmup_steps": 50}
