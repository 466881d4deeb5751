"""Step events say where the run is inside its epoch: steps done of the epoch's total, the epoch's
running loss and accuracy and its speed so far (the run page, the dashboard and the CLI show them)."""

from __future__ import annotations

import pytest

from app.engine import loop
from tests.engine.engine_testing import dataset, mlp_spec, run, subset


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    return subset(dataset("moons", tmp_path_factory.mktemp("data")), 100, 40)


def test_every_step_event_carries_the_epochs_progress(tmp_path, moons, monkeypatch):
    monkeypatch.setattr(loop, "FLUSH_INTERVAL_S", 0.0)  # an event per step
    _, sink = run(tmp_path, mlp_spec(8, 2), moons, epochs=2, batch_size=32)
    steps = sink.of("step")
    assert [(s["epoch"], s["epoch_step"]) for s in steps] == [(1, 1), (1, 2), (1, 3), (1, 4),
                                                              (2, 1), (2, 2), (2, 3), (2, 4)]
    assert {s["epoch_steps"] for s in steps} == {4}  # 100 samples in batches of 32
    assert [s["step"] for s in steps] == list(range(1, 9))
    last_of_epoch = {s["epoch"]: s for s in steps}
    for epoch in sink.of("epoch"):
        step = last_of_epoch[epoch["epoch"]]
        assert step["epoch_progress"] == 1.0
        # The running means over the whole epoch are the epoch's own figures.
        assert step["epoch_loss"] == pytest.approx(epoch["train_loss"])
        assert step["epoch_accuracy"] == pytest.approx(epoch["train_accuracy"])
    for step in steps:
        assert step["epoch_elapsed"] > 0
        assert step["samples_per_sec"] == pytest.approx(step["epoch_progress"] * 100 / step["epoch_elapsed"])
