"""The ingest API against a real server: tokens, exactly-once batches, gaps, artifacts, external runs."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import wait_status

pytestmark = pytest.mark.xdist_group("ingest")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(tmp_path_factory.mktemp("ingest") / "data",
                      env={"TRAINBOARD_HEARTBEAT_TIMEOUT_S": "600", "TRAINBOARD_MAX_ARTIFACT_BYTES": "4096"}).start()
    yield live
    live.stop()


def _external(server: LiveServer, **body) -> tuple[int, dict[str, str]]:
    created = httpx.post(f"{server.url}/api/ingest/runs", json={"name": "script", **body}, timeout=30)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["url"].endswith(f"/runs/{answer['id']}")
    return answer["id"], {"Authorization": f"Bearer {answer['token']}"}


def _batch(first: int, count: int) -> dict:
    return {"events": [{"seq": first + i, "kind": "step", "payload": {"step": first + i, "epoch": 1, "loss": 1.0 / (first + i)}}
                       for i in range(count)]}


def _trainer_seqs(server: LiveServer, run_id: int) -> list[int]:
    return [row[0] for row in server.sql(
        "select trainer_seq from run_events where run_id = :run and trainer_seq is not null order by seq", run=run_id)]


def test_a_batch_sent_twice_is_stored_once(server):
    run_id, auth = _external(server)
    with server.api() as api:
        first = api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(1, 3), headers=auth)
        again = api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(1, 3), headers=auth)
        overlapping = api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(2, 3), headers=auth)
        assert (first.status_code, again.status_code, overlapping.status_code) == (200, 200, 200)
        assert (first.json()["accepted"], again.json()["accepted"], overlapping.json()["accepted"]) == (3, 0, 1)
        assert overlapping.json() == {"accepted": 1, "last_seq": 4, "cancel_requested": False}
        rows = api.get(f"/api/runs/{run_id}/metrics").json()
    assert _trainer_seqs(server, run_id) == [1, 2, 3, 4]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # the server's own seq stays gap-free
    assert [r["kind"] for r in rows] == ["status", "step", "step", "step", "step"]


def test_a_batch_past_the_next_seq_is_a_gap_answered_with_the_expected_seq(server):
    run_id, auth = _external(server)
    with server.api() as api:
        assert api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(1, 2), headers=auth).status_code == 200
        gap = api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(5, 2), headers=auth)
        assert gap.status_code == 409
        assert gap.json()["expected_seq"] == 3
        unordered = api.post(f"/api/ingest/runs/{run_id}/events", headers=auth,
                             json={"events": [{"seq": 4, "kind": "log", "payload": {}}, {"seq": 3, "kind": "log", "payload": {}}]})
        assert unordered.status_code == 422
    assert _trainer_seqs(server, run_id) == [1, 2]


def test_concurrent_deliveries_of_one_batch_store_it_exactly_once(server):
    run_id, auth = _external(server)
    rounds, size = 8, 5
    errors: list[str] = []
    for round_ in range(rounds):
        barrier = threading.Barrier(2, timeout=30)

        def deliver(first: int = 1 + round_ * size, barrier: threading.Barrier = barrier) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as api:
                barrier.wait()
                answer = api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(first, size), headers=auth)
                if answer.status_code != 200:
                    errors.append(answer.text)

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
    assert errors == []
    assert _trainer_seqs(server, run_id) == list(range(1, rounds * size + 1))


def test_tokens_are_per_run_required_and_end_with_the_run(server):
    run_id, auth = _external(server)
    other_id, other_auth = _external(server)
    with server.api() as api:
        assert api.post(f"/api/ingest/runs/{run_id}/heartbeat").status_code == 401
        assert api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(1, 1)).status_code == 401
        assert api.post(f"/api/ingest/runs/{run_id}/heartbeat", headers=other_auth).status_code == 403
        assert api.get(f"/api/ingest/runs/{run_id}/order", headers=other_auth).status_code == 403
        assert api.post(f"/api/ingest/runs/{run_id}/heartbeat", headers=auth).json() == {"cancel_requested": False}
        order = api.get(f"/api/ingest/runs/{run_id}/order", headers=auth)
        assert order.status_code == 200 and order.json()["run_id"] == run_id
        done = api.post(f"/api/ingest/runs/{run_id}/status", headers=auth,
                        json={"status": "completed", "result": {"train_time_s": 1.5}})
        assert done.json()["accepted"] is True
        ended = api.post(f"/api/ingest/runs/{run_id}/heartbeat", headers=auth)
        assert ended.status_code == 403 and "the run has ended" in ended.json()["detail"]
        assert api.post(f"/api/ingest/runs/{run_id}/events", json=_batch(1, 1), headers=auth).status_code == 403
        run = api.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "completed" and run["train_time_s"] == 1.5
        assert api.post(f"/api/runs/{run_id}/resume").status_code == 409  # its script owns it
        assert api.post(f"/api/ingest/runs/{other_id}/heartbeat", headers=other_auth).status_code == 200


def test_an_artifact_over_the_limit_is_refused_and_leaves_nothing(server):
    run_id, auth = _external(server)
    run_dir = server.data_dir / "artifacts" / f"run-{run_id}"
    with server.api() as api:
        declared = api.put(f"/api/ingest/runs/{run_id}/artifacts/model.bin", content=b"x" * 5000, headers=auth)
        assert declared.status_code == 413

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(5):
                yield b"y" * 1000

        streamed = api.put(f"/api/ingest/runs/{run_id}/artifacts/model.bin", content=chunks(), headers=auth)
        assert streamed.status_code == 413
        assert not run_dir.exists() or not any(p.is_file() for p in run_dir.rglob("*"))
        assert "model.bin" not in [a["name"] for a in api.get(f"/api/runs/{run_id}/artifacts").json()]
        small = api.put(f"/api/ingest/runs/{run_id}/artifacts/model.bin", content=b"z" * 100, headers=auth)
        assert small.status_code == 200, small.text
        assert (run_dir / "export" / "model.bin").read_bytes() == b"z" * 100
        listed = api.get(f"/api/runs/{run_id}/artifacts").json()
        assert [(a["name"], a["bytes"]) for a in listed if a["name"] == "model.bin"] == [("model.bin", 100)]
        assert api.get(f"/api/runs/{run_id}/artifacts/model.bin").content == b"z" * 100


def test_an_external_run_whose_heartbeats_stop_fails(tmp_path):
    live = LiveServer(tmp_path / "data", env={"TRAINBOARD_HEARTBEAT_TIMEOUT_S": "1"}).start()
    try:
        run_id, _auth = _external(live)
        with live.api() as api:
            run = wait_status(api, run_id, "failed", timeout=30)
        assert run["failure_reason"] == "its script stopped sending heartbeats"
    finally:
        live.stop()


def test_the_http_store_drops_rows_the_server_refuses_and_keeps_the_rest_in_order(server):
    """A row the server refuses as invalid (422) is dropped with a message instead of holding back
    every later row; what is left is renumbered, so the trainer seqs stay gap-free."""
    from app.runs.http_store import HttpRunStore

    created = httpx.post(f"{server.url}/api/ingest/runs", json={"name": "script"}, timeout=30).json()
    store = HttpRunStore(server.url, created["id"], created["token"])
    try:
        store.append([("step", {"step": 1, "epoch": 1, "loss": 0.5}),
                      ("step", {"step": 2, "epoch": 1, "loss": "not a number"}),
                      ("step", {"step": 3, "epoch": 1, "loss": 0.25})])
        store.append([("step", {"step": 4, "epoch": 1, "loss": 0.125})])
        assert store.unsent == 0
    finally:
        store.close()
    assert _trainer_seqs(server, created["id"]) == [1, 2, 3]
    with server.api() as api:
        steps = [r["step"] for r in api.get(f"/api/runs/{created['id']}/metrics").json() if r["kind"] == "step"]
    assert steps == [1, 3, 4]


@pytest.mark.parametrize("payload, message", [
    ({"epoch_step": "12"}, "payload.epoch_step must be a whole number"),
    ({"epoch_steps": -1}, "payload.epoch_steps must be a whole number"),
    ({"epoch_progress": "half"}, "payload.epoch_progress must be a finite number"),
    ({"epoch_elapsed": float("inf")}, "payload.epoch_elapsed must be a finite number"),
])
def test_the_progress_fields_of_a_step_are_checked(payload, message):
    """The dashboard and the run page compute bars and ETAs from them: a script cannot send text."""
    from pydantic import ValidationError

    from app.runs.ingest import IngestEvent

    with pytest.raises(ValidationError, match=message):
        IngestEvent(seq=1, kind="step", payload={"epoch": 1, "step": 3, **payload})
    assert IngestEvent(seq=1, kind="step", payload={"epoch": 1, "step": 3, "epoch_step": 3, "epoch_steps": 10,
                                                    "epoch_progress": 0.3, "epoch_elapsed": 1.5})


def test_a_script_s_minimal_test_evaluation_shows_on_the_run_page(server):
    """A script's evaluation need not carry everything the engine's does (per-class table, macro and
    weighted averages, a confusion matrix): the run page shows what there is, never a 500."""
    run_id, auth = _external(server, dataset="digits")
    events = [{"seq": 1, "kind": "evaluation", "payload": {"split": "test", "epoch": 1, "accuracy": 0.91, "loss": 0.3}}]
    assert httpx.post(f"{server.url}/api/ingest/runs/{run_id}/events", json={"events": events}, headers=auth,
                      timeout=30).status_code == 200
    assert httpx.post(f"{server.url}/api/ingest/runs/{run_id}/status", json={"status": "completed"}, headers=auth,
                      timeout=30).status_code == 200
    for path in (f"/runs/{run_id}", f"/runs/{run_id}/results"):
        page = httpx.get(f"{server.url}{path}", timeout=30)
        assert page.status_code == 200, (path, page.text[-2000:])
    assert "91.0%" in httpx.get(f"{server.url}/runs/{run_id}/results", timeout=30).text
