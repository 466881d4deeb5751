"""GET /api/runs/{id}/histograms: one event per epoch (a resumed run's repeated epochs replace the
abandoned ones), the run's flagged layers, and the run page's snapshot leaving them out."""

from __future__ import annotations


def _hist(epoch: int, flags: list[str] | None = None) -> dict:
    layer = {"index": 1, "name": "#2 Dense", "weights": {"lo": -1.0, "hi": 1.0, "counts": [epoch, 1], "nonfinite": 0},
             "flags": flags or []}
    warnings = [{"layer": "#2 Dense", "kind": kind, "message": "why"} for kind in flags or []]
    return {"epoch": epoch, "step": 10 * epoch, "bins": 2, "layers": [layer], "warnings": warnings}


def _make_run(events: list) -> int:
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import Run

    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status="running")
        db_session.add(run)
        db_session.flush()
        append_events(db_session, run.id, [("status", {"status": "queued"}), *events])
        return run.id


def test_each_epoch_once_from_the_latest_history_with_the_flags(client):
    # Epochs 1-3, then a resume from epoch 1's checkpoint repeats 2 (and stops there).
    run_id = _make_run([("histograms", _hist(1)), ("log", {"level": "info", "message": "x"}),
                        ("histograms", _hist(2, ["exploding"])), ("histograms", _hist(3)),
                        ("histograms", {**_hist(2), "layers": [{**_hist(2)["layers"][0], "resumed": True}]})])
    answer = client.get(f"/api/runs/{run_id}/histograms").json()
    assert [e["epoch"] for e in answer["epochs"]] == [1, 2]
    assert answer["epochs"][1]["layers"][0].get("resumed") is True and answer["epochs"][1]["seq"] == 6
    assert answer["flagged"] == {}  # the exploding epoch 2 was abandoned
    assert answer["last_seq"] == 6

    flagged = _make_run([("histograms", _hist(1, ["exploding", "vanishing"])), ("histograms", _hist(2, ["vanishing"]))])
    answer = client.get(f"/api/runs/{flagged}/histograms", params={"last": 1}).json()
    assert [e["epoch"] for e in answer["epochs"]] == [2]
    assert answer["flagged"] == {"#2 Dense": ["exploding", "vanishing"]}


def test_the_page_snapshot_leaves_histograms_out(client):
    run_id = _make_run([("log", {"level": "info", "message": "a"}), ("histograms", _hist(1))])
    events = client.get(f"/api/runs/{run_id}/series", params={"events": 50}).json()["events"]
    assert [e["kind"] for e in events] == ["status", "log"]


def test_bad_requests_answer_4xx_with_a_message(client):
    assert client.get("/api/runs/424242/histograms").status_code == 404
    response = client.get("/api/runs/1/histograms", params={"last": 5000})
    assert response.status_code == 422 and "last" in response.text
    assert client.get("/api/runs/abc/histograms").status_code == 422
