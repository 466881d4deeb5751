"""Pruning where a trainer's epoch rows are stored (app/runs/sink.py → app/sweeps/service.py), with the
trainers played by the test: median and successive-halving verdicts, and a pruned run's lifecycle."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.runs import lifecycle
from app.runs.models import CANCELLED, COMPLETED, PRUNED, Run
from app.runs.sink import persist_batch


def _start(run_id: int) -> None:
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, run_id, "test")
        assert lifecycle.report_running(db_session, run_id, pid=1)


def _epoch(run_id: int, epoch: int, value: float) -> bool:
    """Store one epoch row as a trainer would; True when the run was asked to stop."""
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [("epoch", {"epoch": epoch, "val_accuracy": value, "epoch_time": 0.1})])
    with session_scope(write=False) as db_session:
        return lifecycle.should_stop(db_session, run_id)


def _finish(run_id: int, status: str) -> Run:
    with session_scope() as db_session:
        lifecycle.finish(db_session, run_id, status, "cancelled by the user" if status == CANCELLED else None)
    with session_scope(write=False) as db_session:
        run = db_session.get(Run, run_id)
        db_session.expunge(run)
        return run


def _sweep(client, pruner: str, trials: int = 8) -> int:
    answer = client.post("/api/sweeps", json={
        "dataset": "digits", "preset": "mnist-mlp", "config": {"epochs": 4}, "sampler": "random", "trials": trials,
        "pruner": pruner, "space": {"config.optimizer.lr": {"type": "log_uniform", "low": 1e-4, "high": 0.1}}})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _trial_ids(sweep_id: int) -> list[int]:
    with session_scope(write=False) as db_session:
        return list(db_session.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.sweep_trial)))


def test_median_pruner_stops_a_trial_behind_the_median_and_it_ends_pruned(client):
    sweep_id = _sweep(client, "median")
    ids = _trial_ids(sweep_id)
    assert len(ids) == 8  # random: every trial queued at once
    for number, run_id in enumerate(ids[:5]):  # five complete trials: the median's start-up
        _start(run_id)
        for epoch in (1, 2, 3, 4):
            assert not _epoch(run_id, epoch, 0.5 + 0.1 * epoch + 0.01 * number)
        assert _finish(run_id, COMPLETED).status == COMPLETED
    ahead, behind = ids[5], ids[6]
    _start(ahead)
    assert not _epoch(ahead, 1, 0.9)  # above the median: goes on
    _start(behind)
    assert _epoch(behind, 1, 0.2)  # below it: asked to stop right after epoch 1
    run = _finish(behind, CANCELLED)  # the trainer stops as for a cancel…
    assert run.status == PRUNED and run.pruned_epoch == 1  # …and the run ends pruned, with the epoch
    assert run.failure_reason.startswith("pruned after epoch 1 by the sweep's median pruner: val_accuracy 0.2")
    with pytest.raises(lifecycle.IllegalTransition), session_scope() as db_session:  # final: never resumed
        lifecycle.resume(db_session, behind, None)
    # the last epoch is never judged: nothing is left to save
    last = ids[7]
    _start(last)
    with session_scope() as db_session:
        db_session.execute(Run.__table__.update().where(Run.id == last).values(epochs_total=1))
    assert not _epoch(last, 1, 0.01)
    sweep = client.get(f"/api/sweeps/{sweep_id}").json()
    statuses = {t["run_id"]: t["status"] for t in sweep["trials"]}
    assert statuses[behind] == "pruned" and statuses[ahead] == "running"
    pruned = next(t for t in sweep["trials"] if t["run_id"] == behind)
    assert pruned["value"] is None and pruned["pruned_epoch"] == 1 and pruned["intermediate"] == {"1": 0.2}


def test_successive_halving_keeps_its_rungs_on_the_run(client):
    sweep_id = _sweep(client, "asha")
    ids = _trial_ids(sweep_id)
    verdicts = []
    for number, run_id in enumerate(ids[:6]):
        _start(run_id)
        stopped = _epoch(run_id, 1, [0.9, 0.3, 0.8, 0.2, 0.85, 0.1][number])
        verdicts.append(stopped)
        if stopped:
            assert _finish(run_id, CANCELLED).status == PRUNED
        else:
            for epoch in (2, 3, 4):
                _epoch(run_id, epoch, 0.9)
            _finish(run_id, COMPLETED)
    with session_scope(write=False) as db_session:
        attrs = [db_session.get(Run, run_id).sweep_attrs for run_id in ids[:6]]
    assert all(a and "completed_rung_0" in a for a in attrs), attrs  # ASHA's rung 0 value, kept per trial
    assert verdicts[0] is False  # the first trial has nobody to lose to
    assert any(verdicts[3:]), verdicts  # a weak trial after strong ones is promoted no further
