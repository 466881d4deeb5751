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
            # it stopped right after the epoch it was judged at (the trainer waits for the verdict)
            assert run["epoch"] == run["pruned_epoch"]
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


def test_the_tutorial_reproduced_fills_its_tables_from_measured_runs(tmp_path, mnist_files):
    from app.datasets import registry

    data = tmp_path / "data"
    data.mkdir()
    registry.import_idx("mnist", mnist_files, data)
    server = LiveServer(data, env={"TRAINBOARD_SLOTS": "2"}).start()
    try:
        api = server.api()
        answer = api.post("/api/tutorial", json={"epochs": 1, "max_train_samples": 256})
        assert answer.status_code == 201, answer.text
        sweep = answer.json()
        assert sweep["kind"] == "tutorial" and len(sweep["trials"]) == 4
        assert [t["params"]["model"] for t in sweep["trials"]] == ["mnist-mlp", "mnist-mlp-dropout", "cifar10-cnn",
                                                                  "mnist-lstm"]
        # CIFAR-10 is not here: the CNN trains on a stated substitute
        assert "CIFAR-10 is not on this server" in sweep["note"]
        assert sweep["trials"][2]["params"]["dataset"] == "mnist"
        sweep = wait_sweep(api, sweep["id"], lambda s: s["status"] == "completed", 240, "completed")
        assert {t["status"] for t in sweep["trials"]} == {"completed"}, sweep["trials"]
        runs = {t["params"]["model"]: api.get(f"/api/runs/{t['run_id']}").json() for t in sweep["trials"]}
        ids = ",".join(str(t["run_id"]) for t in sweep["trials"])
        page = api.get(f"/compare?runs={ids}&tutorial={sweep['id']}")
        assert page.status_code == 200
        html = page.text
        assert 'id="tutorial-tables"' in html and 'id="cnn-vs-rnn"' in html
        assert "CIFAR-10 is not on this server" in html
        for preset, run in runs.items():
            row = html[html.index(f'data-preset="{preset}"'):]
            row = row[:row.index("</tr>")]
            assert f"{run['test_accuracy'] * 100:.1f}%" in row, (preset, row)
            assert "1 / 1" in row
        table = html[html.index('id="cnn-vs-rnn"'):html.index("</table>", html.index('id="cnn-vs-rnn"'))]
        assert f"{runs['cifar10-cnn']['total_params']:,} parameters" in table
        assert f"{runs['mnist-lstm']['total_params']:,} parameters" in table
        assert "≈70.0%" in html and "≈97.4%" in html  # the tutorial's figures beside ours
        # the sweep page points at this comparison
        sweep_page = api.get(f"/sweeps/{sweep['id']}").text
        assert f'href="/compare?runs={ids}&amp;tutorial={sweep["id"]}"' in sweep_page
    finally:
        server.stop()
