"""Local trainers that report over HTTP (TRAINBOARD_TRAINER_STORE=http), and a server restart mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveServer, database_url_for, run_sql
from tests.runs.helpers import run_body, wait_metrics, wait_status

pytestmark = pytest.mark.xdist_group("ingest-trainers")
HTTP = {"TRAINBOARD_TRAINER_STORE": "http", "TRAINBOARD_SLOTS": "1"}


def _train(data: Path, env: dict[str, str], body: dict) -> tuple[dict, list[dict]]:
    server = LiveServer(data, env=env).start()
    try:
        with server.api() as api:
            run_id = api.post("/api/runs", json=body).json()["id"]
            run = wait_status(api, run_id, "completed", "failed", timeout=120)
            return run, api.get(f"/api/runs/{run_id}/metrics", params={"limit": 10000}).json()
    finally:
        server.stop()


def _trainer_seqs(data: Path, run_id: int) -> list[int]:
    return [row[0] for row in run_sql(database_url_for(data), "select trainer_seq from run_events where "
                                      "run_id = :run and trainer_seq is not null order by trainer_seq", run=run_id)]


def test_an_http_store_trainer_matches_the_database_store_at_the_same_seed(tmp_path):
    body = run_body(epochs=2, seed=7)
    over_db, _ = _train(tmp_path / "db", {"TRAINBOARD_SLOTS": "1"}, body)
    over_http, rows = _train(tmp_path / "http", HTTP, body)
    assert over_db["status"] == over_http["status"] == "completed", (over_db, over_http)
    assert over_http["test_accuracy"] == over_db["test_accuracy"]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    sent = _trainer_seqs(tmp_path / "http", over_http["id"])
    assert sent == list(range(1, len(sent) + 1)) and len(sent) == sum(r["kind"] != "status" for r in rows)
    assert {r["kind"] for r in rows} >= {"step", "epoch", "evaluation", "artifact"}


def test_a_server_killed_mid_run_loses_no_event_of_an_http_trainer(tmp_path):
    data = tmp_path / "data"
    first = LiveServer(data, env=HTTP).start()
    second = None
    try:
        with first.api() as api:
            run_id = api.post("/api/runs", json=run_body(epochs=12, batch_size=8)).json()["id"]
            wait_metrics(api, run_id)
        first.process.kill()  # SIGKILL: the trainer keeps going and buffers what it cannot send
        first.process.wait()
        second = LiveServer(data, env=HTTP)
        second.port, second.url = first.port, first.url
        second.start()
        with second.api() as api:
            run = wait_status(api, run_id, "completed", "failed", "interrupted", timeout=180)
            rows = api.get(f"/api/runs/{run_id}/metrics", params={"limit": 10000}).json()
        assert run["status"] == "completed", run
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        sent = _trainer_seqs(data, run_id)
        assert sent == list(range(1, len(sent) + 1))  # every trainer seq once, none missing
        assert [r["payload"]["epoch"] for r in rows if r["kind"] == "epoch"] == list(range(1, 13))
    finally:
        first.stop()
        if second is not None:
            second.stop()
