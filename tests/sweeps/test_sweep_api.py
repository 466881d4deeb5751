"""Sweeps through the API without an executor: validation before anything is queued, the trials a
grid and an architecture space queue, cancel, and the answer's shape."""

from __future__ import annotations

import pytest

from tests.conftest import database_url_for, run_sql


@pytest.fixture
def db_url(data_dir) -> str:
    return database_url_for(data_dir)


def _sweep(client, **body):
    base = {"dataset": "digits", "preset": "mnist-mlp", "config": {"epochs": 2}}
    return client.post("/api/sweeps", json={**base, **body})


def _queued_runs(client, sweep_id: int) -> list[dict]:
    runs = client.get("/api/runs", params={"limit": 500}).json()["items"]
    return sorted((r for r in runs if r["sweep_id"] == sweep_id), key=lambda r: r["sweep_trial"])


def test_architecture_sweep_queues_six_distinct_valid_architectures(client):
    answer = _sweep(client, name="units x blocks", sampler="grid",
                    space={"spec.dense_units": [64, 128, 256], "spec.dense_blocks": [1, 2]})
    assert answer.status_code == 201, answer.text
    sweep = answer.json()
    assert sweep["status"] == "running" and sweep["trials_total"] == 6
    runs = _queued_runs(client, sweep["id"])
    assert [r["sweep_trial"] for r in runs] == list(range(6))
    assert all(r["status"] == "queued" for r in runs)
    specs = [r["spec"] for r in runs]
    assert len({repr(s) for s in specs}) == 6, "six distinct architectures"
    for run in runs:
        units, blocks = run["sweep_params"]["spec.dense_units"], run["sweep_params"]["spec.dense_blocks"]
        hidden = [layer for layer in run["spec"]["layers"][:-1] if layer["type"] == "Dense"]
        assert [layer["units"] for layer in hidden] == [units] * blocks
        assert run["spec"]["layers"][-1] == {"type": "Dense", "units": 10, "activation": "softmax"}
        assert run["spec"]["input_shape"] == [1, 8, 8]
    assert {(r["sweep_params"]["spec.dense_units"], r["sweep_params"]["spec.dense_blocks"]) for r in runs} == {
        (u, b) for u in (64, 128, 256) for b in (1, 2)}
    assert sweep["trials"][0]["params"] == runs[0]["sweep_params"]
    assert runs[0]["total_params"] < runs[-1]["total_params"]


def test_an_out_of_cap_variant_is_rejected_before_anything_is_queued(client, db_url):
    before = run_sql(db_url, "SELECT count(*) FROM runs")[0][0]
    answer = _sweep(client, sampler="grid", space={"spec.dense_units": [64, 50_000_000], "spec.dense_blocks": [1, 2]})
    assert answer.status_code == 422
    message = answer.json()["detail"] if isinstance(answer.json().get("detail"), str) else answer.text
    assert "dense_units=50000000" in answer.text and "parameters" in answer.text, message
    assert run_sql(db_url, "SELECT count(*) FROM runs")[0][0] == before
    assert run_sql(db_url, "SELECT count(*) FROM sweeps")[0][0] == 0


def test_bad_spaces_say_what_to_fix(client, db_url):
    cases = [
        ({"space": {"config.optimizer.learning_rate": [0.1]}}, "is not a run setting"),
        ({"space": {"spec.layers[7].units": [8]}}, "layers 0 to 2"),
        ({"space": {"config.optimizer.lr": {"type": "log_uniform", "low": 0, "high": 1}}}, "low > 0"),
        ({"space": {"config.optimizer.lr": {"type": "uniform", "low": 0.1, "high": 0.01}}}, "must be below high"),
        ({"sampler": "grid", "space": {"config.optimizer.lr": {"type": "uniform", "low": 0.01, "high": 0.1}}},
         "grid sampler takes lists only"),
        ({"space": {"config.batch_size": [16, 10**9]}}, "over the limit"),
        ({"space": {"config.optimizer.lr": [-1.0, 0.1]}}, "greater than 0"),
        ({"space": {"spec.rnn_cell": ["LSTM"]}}, "no layer it applies to"),
        ({"space": {}}, "the space is empty"),
        ({"sampler": "grid", "trials": 5, "space": {"config.batch_size": [16, 32]}}, "at most 2 trials"),
        ({"space": {"config.optimizer.lr": [0.1]}, "config": {"val_split": 0}}, "needs a validation split"),
    ]
    for body, words in cases:
        answer = _sweep(client, **body)
        assert answer.status_code == 422, (body, answer.text)
        assert words in answer.text, (body, answer.text)
    assert run_sql(db_url, "SELECT count(*) FROM runs")[0][0] == 0


def test_tpe_queues_up_to_the_slots_and_cancel_stops_everything(client):
    answer = _sweep(client, sampler="tpe", trials=12, parallelism=2, seed=3,
                    space={"config.optimizer.lr": {"type": "log_uniform", "low": 1e-4, "high": 0.1},
                           "spec.layers[1].units": [16, 32, 64]})
    assert answer.status_code == 201, answer.text
    sweep = answer.json()
    runs = _queued_runs(client, sweep["id"])
    assert len(runs) == 2 and sweep["trials_total"] == 12
    for run in runs:
        lr = run["sweep_params"]["config.optimizer.lr"]
        assert 1e-4 <= lr <= 0.1 and run["config"]["optimizer"]["lr"] == lr
        assert run["spec"]["layers"][1]["units"] == run["sweep_params"]["spec.layers[1].units"]
    cancelled = client.post(f"/api/sweeps/{sweep['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert {t["status"] for t in cancelled["trials"]} == {"cancelled"}
    assert client.get(f"/api/sweeps/{sweep['id']}").json()["status"] == "cancelled"
    assert client.get("/api/sweeps/999").status_code == 404
