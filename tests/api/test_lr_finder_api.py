"""POST /api/lr-finder → 202 and a job id; GET /api/lr-finder/{id} until done: the curve and a suggestion.
The search runs in its own process (python -m app.runs.lr_finder), never in the web process."""

from __future__ import annotations

import signal
import time

import pytest

from app.runs import lr_finder

BODY = {"preset": "mnist-mlp", "dataset": "digits", "config": {"batch_size": 32, "seed": 0}, "steps": 120}


def _wait(client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/api/lr-finder/{job_id}")
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["status"] != "running":
            return job
        time.sleep(0.2)
    raise AssertionError(f"the search {job_id} did not end within {timeout} s")


def test_a_search_answers_202_then_points_and_a_suggestion(client, monkeypatch):
    import app.engine.lr_finder as engine

    # Were the search run in this (the web) process, it would fail: it runs in a process of its own.
    monkeypatch.setattr(engine, "range_test", lambda *args, **kwargs: pytest.fail("searched in the web process"))
    answer = client.post("/api/lr-finder", json=BODY)
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert started["status"] == "running" and len(started["id"]) == 32
    assert (started["dataset"], started["batch_size"], started["optimizer"], started["steps"]) == ("digits", 32, "adam", 120)
    job = _wait(client, started["id"])
    assert job["status"] == "done", job
    points = job["points"]
    assert 20 <= len(points) <= 120
    lrs = [p["lr"] for p in points]
    assert lrs == sorted(lrs) and lrs[0] == 1e-7  # exponential growth from 1e-7
    assert all({"lr", "loss", "raw", "smooth"} <= set(p) for p in points)
    if job["stopped"] == "diverged":  # it stopped because the loss exploded: the last loss shows it
        assert points[-1]["loss"] > 4 * min(p["loss"] for p in points)
    assert 1e-4 <= job["suggestion"] <= 1e-1 and lrs[0] < job["suggestion"] < lrs[-1]


def test_a_bad_body_is_422_with_the_fields_named(client):
    answer = client.post("/api/lr-finder", json={**BODY, "steps": 5000, "config": {"batch_size": 0}})
    assert answer.status_code == 422
    fields = {error["field"] for error in answer.json()["errors"]}
    assert {"steps", "config.batch_size"} <= fields
    answer = client.post("/api/lr-finder", json={**BODY, "preset": "no-such-model"})
    assert answer.status_code == 422 and "no-such-model" in answer.json()["detail"]
    answer = client.post("/api/lr-finder", json={**BODY, "dataset": "no_such_data"})
    assert answer.status_code == 422 and "no_such_data" in answer.json()["detail"]


def test_an_unknown_job_is_404_and_a_malformed_id_422(client):
    assert client.get("/api/lr-finder/" + "0" * 32).status_code == 404
    assert client.get("/api/lr-finder/not-hex!").status_code in (404, 422)


def test_no_more_than_max_running_searches_at_once(client, monkeypatch):
    monkeypatch.setattr(lr_finder, "MAX_RUNNING", 1)
    first = client.post("/api/lr-finder", json={**BODY, "steps": 300})
    assert first.status_code == 202
    second = client.post("/api/lr-finder", json=BODY)
    if second.status_code == 202:  # the first ended already (a very fast machine): nothing to check
        _wait(client, second.json()["id"])
    else:
        assert second.status_code == 429 and "running already" in second.json()["detail"]
    _wait(client, first.json()["id"])


def test_a_search_past_its_deadline_is_stopped_and_says_why(client, monkeypatch):
    monkeypatch.setattr(lr_finder, "DEADLINE_S", 0.3)  # less than the search process takes to start
    started = client.post("/api/lr-finder", json=BODY)
    assert started.status_code == 202
    job = _wait(client, started.json()["id"])
    assert job["status"] == "failed" and "did not end within 0.3 s" in job["error"] and job["suggestion"] is None


def test_the_server_stopping_stops_its_searches(data_dir):
    """A search runs in a process of its own: when the server shuts down, that process goes with it."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import LOCAL

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
        started = client.post("/api/lr-finder", json={**BODY, "steps": 300})
        assert started.status_code == 202, started.text
        job = lr_finder._jobs[started.json()["id"]]
        process = job.process
        assert process is not None and process.poll() is None
    # Killed by the shutdown (a search ending by itself exits 0; it could otherwise run on up to its deadline).
    assert process.wait(timeout=5) == -signal.SIGKILL
