"""Sweeps on a live server with real trainers: a TPE sweep with median pruning ends with pruned trials
and an importance ranking; the best configuration runs again for more epochs."""

from __future__ import annotations

import time

import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.xdist_group("sweeps-live")


def wait_sweep(api, sweep_id: int, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    sweep = {}
    while time.monotonic() < deadline:
        sweep = api.get(f"/api/sweeps/{sweep_id}").json()
        if predicate(sweep):
            return sweep
        time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} did not reach {what} in {timeout}s: "
                         f"{[(t['number'], t['status'], t['value']) for t in sweep.get('trials', [])]}")


def test_tpe_sweep_with_median_pruning_prunes_and_ranks_importances(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_SLOTS": "2"}).start()
    try:
        api = server.api()
        body = {"name": "lr x units", "dataset": "digits", "preset": "mnist-mlp",
                "config": {"epochs": 4, "batch_size": 64},
                "space": {"config.optimizer.lr": {"type": "log_uniform", "low": 0.00005, "high": 0.05},
                          "spec.layers[1].units": [8, 32, 64]},
                "sampler": "tpe", "trials": 12, "pruner": "median", "seed": 1,
                "objective": {"metric": "val_accuracy", "direction": "maximize"}}
        answer = api.post("/api/sweeps", json=body)
        assert answer.status_code == 201, answer.text
        sweep_id = answer.json()["id"]
        sweep = wait_sweep(api, sweep_id, lambda s: s["status"] == "completed", 300, "completed")
        trials = sweep["trials"]
        assert len(trials) == 12 and [t["number"] for t in trials] == list(range(12))
        statuses = [t["status"] for t in trials]
        assert set(statuses) <= {"completed", "pruned"}, statuses
        pruned = [t for t in trials if t["status"] == "pruned"]
        assert pruned, f"no trial was pruned: {[(t['params'], t['intermediate']) for t in trials]}"
        for trial in pruned:
            run = api.get(f"/api/runs/{trial['run_id']}").json()
            assert run["status"] == "pruned" and 1 <= run["pruned_epoch"] < 4
            assert f"pruned after epoch {run['pruned_epoch']}" in run["failure_reason"]
            assert trial["value"] is None and trial["pruned_epoch"] == run["pruned_epoch"]
            # it stopped early: fewer epochs recorded than asked for
            assert run["epoch"] < 4
        completed = [t for t in trials if t["status"] == "completed"]
        assert all(t["value"] is not None for t in completed)
        best = sweep["best"]
        assert best["value"] == max(t["value"] for t in completed)
        importances = sweep["importances"]
        assert set(importances) == {"config.optimizer.lr", "spec.layers[1].units"}
        assert abs(sum(importances.values()) - 1) < 1e-6
        # the best configuration again, for more epochs
        again = api.post(f"/api/sweeps/{sweep_id}/best-run", json={"epochs": 5})
        assert again.status_code == 201, again.text
        run = again.json()
        best_run = api.get(f"/api/runs/{best['run_id']}").json()
        assert run["config"]["epochs"] == 5 and run["spec"] == best_run["spec"]
        assert run["config"]["optimizer"] == best_run["config"]["optimizer"] and run["sweep_id"] is None
    finally:
        server.stop()
