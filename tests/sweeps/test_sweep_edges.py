"""Sweeps at their edges: deleted trials, long names, ranges on whole-number settings, huge grids, stale
prune requests, and input that must be a 4xx (never a 500)."""

from __future__ import annotations

from sqlalchemy import select

from app.core.db import session_scope
from app.runs import lifecycle
from app.runs.models import COMPLETED, Run, Sweep
from app.sweeps import service as sweeps_service
from tests.sweeps.test_pruning import _epoch, _finish, _start
from tests.sweeps.test_sweep_api import _sweep


def _complete(run_id: int) -> None:
    _start(run_id)
    _epoch(run_id, 1, 0.5)
    _finish(run_id, COMPLETED)


def _advance() -> None:
    with session_scope() as db_session:
        sweeps_service.advance(db_session, slots=2)


def _status(sweep_id: int) -> str:
    with session_scope(write=False) as db_session:
        return db_session.scalar(select(Sweep.status).where(Sweep.id == sweep_id))


def test_a_deleted_trial_neither_stalls_its_sweep_nor_the_others(client):
    grid = _sweep(client, sampler="grid", config={"epochs": 1},
                  space={"config.optimizer.lr": [0.001, 0.01], "spec.dense_units": [16, 32]}).json()
    ids = [t["run_id"] for t in grid["trials"]]
    assert client.delete(f"/api/runs/{ids[1]}").status_code == 204  # a queued trial, deleted
    tutorial = client.post("/api/tutorial", json={"epochs": 1}).json()
    assert client.delete(f"/api/runs/{tutorial['trials'][0]['run_id']}").status_code == 204
    later = _sweep(client, sampler="grid", config={"epochs": 1}, space={"spec.dense_units": [16]}).json()
    for run_id in [ids[0], ids[2], ids[3], later["trials"][0]["run_id"]]:
        _complete(run_id)
    _advance()
    assert _status(grid["id"]) == "completed"  # three trials left, all done: not waiting for the fourth
    assert _status(later["id"]) == "completed"  # not stalled behind the tutorial's deleted run
    assert len(client.get(f"/api/sweeps/{grid['id']}").json()["trials"]) == 3


def test_long_names_are_cut_to_fit_the_runs(client):
    answer = _sweep(client, name="x" * 200, sampler="tpe", trials=3, parallelism=1,
                    space={"config.optimizer.lr": [0.001, 0.01]})
    assert answer.status_code == 201, answer.text
    run = client.get(f"/api/runs/{answer.json()['trials'][0]['run_id']}").json()
    assert len(run["name"]) <= 200 and run["name"].endswith("· trial 0")


def test_a_float_range_on_a_whole_number_setting_is_refused_with_the_fix(client):
    for key in ("spec.dense_units", "config.batch_size", "spec.layers[1].units"):
        answer = _sweep(client, sampler="random", trials=3,
                        space={key: {"type": "log_uniform", "low": 16, "high": 512}})
        assert answer.status_code == 422, answer.text
        assert "int_uniform or int_log_uniform" in answer.text
    ok = _sweep(client, sampler="random", trials=3, space={"spec.dense_units": {"type": "int_log_uniform", "low": 16,
                                                                                 "high": 512}})
    assert ok.status_code == 201, ok.text
    assert all(isinstance(t["params"]["spec.dense_units"], int) for t in ok.json()["trials"])


def test_huge_grids_need_a_budget_and_then_run_a_sample_of_the_whole_grid(client):
    space = {"config.optimizer.lr": [0.001 * (i + 1) for i in range(40)], "spec.dense_units": list(range(8, 38))}
    refused = _sweep(client, sampler="grid", space=space)
    assert refused.status_code == 422 and "1,200 combinations" in refused.text
    sampled = _sweep(client, sampler="grid", trials=6, seed=4, space=space)
    assert sampled.status_code == 201, sampled.text
    params = [tuple(t["params"].values()) for t in sampled.json()["trials"]]
    assert len(set(params)) == 6
    assert len({lr for lr, _ in params}) > 1  # spread over the grid, not its first six combinations


def test_zero_blocks_with_a_units_variant_is_a_valid_space(client):
    answer = _sweep(client, sampler="grid", space={"spec.dense_blocks": [0, 1], "spec.dense_units": [16, 32]})
    assert answer.status_code == 201, answer.text
    specs = [client.get(f"/api/runs/{t['run_id']}").json()["spec"] for t in answer.json()["trials"]]
    assert [len([x for x in s["layers"] if x["type"] == "Dense"]) for s in specs] == [1, 1, 2, 2]


def test_a_prune_request_is_forgotten_by_any_other_change(client):
    sweep = _sweep(client, sampler="random", trials=1, pruner="median",
                   space={"config.optimizer.lr": [0.001, 0.01]}).json()
    run_id = sweep["trials"][0]["run_id"]
    _start(run_id)
    with session_scope() as db_session:
        assert lifecycle.request_prune(db_session, run_id, 1, "pruned after epoch 1")
        assert lifecycle.fail(db_session, run_id, "its trainer hung")  # failed before it stopped
    with session_scope() as db_session:
        lifecycle.resume(db_session, run_id, None)
    _start(run_id)
    run = _finish(run_id, "cancelled")  # a user's cancel later: cancelled, not pruned
    assert run.status == "cancelled" and run.pruned_epoch is None


def test_bad_input_on_the_sweep_pages_is_a_4xx(client):
    sweep = _sweep(client, sampler="grid", config={"epochs": 1}, space={"spec.dense_units": [16, 32]}).json()
    for run_id in [t["run_id"] for t in sweep["trials"]]:
        _complete(run_id)
    for epochs in ("²", "1" * 5000, "-1"):
        answer = client.post(f"/sweeps/{sweep['id']}/best-run", data={"epochs": epochs})
        assert answer.status_code == 422, (epochs, answer.status_code)
    too_many = client.post(f"/api/sweeps/{sweep['id']}/best-run", json={"epochs": 10**6})
    assert too_many.status_code == 422 and "over the limit" in too_many.text and "pydantic" not in too_many.text
    ids = ",".join(str(t["run_id"]) for t in sweep["trials"])
    assert client.get(f"/compare?runs={ids}&tutorial=²").status_code == 200
    nested = client.post("/sweeps", data={"model": "preset:mnist-mlp", "dataset": "digits", "sampler": "grid",
                                           "space": "[" * 5000})
    assert nested.status_code == 422 and "JSON object" in nested.text
    with session_scope(write=False) as db_session:
        assert db_session.scalar(select(Run.id).where(Run.name.like("%best%"))) is None
