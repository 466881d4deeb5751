"""GET /api/runs/{id}/series: long step curves downsampled (MinMaxLTTB) for charts, short ones whole."""

from __future__ import annotations

import math

import pytest


def _make_run(steps: int, *, epochs_every: int = 0, loss=None, extra: list | None = None) -> int:
    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import Run

    loss = loss or (lambda i: 1.0 / i + 0.01 * math.sin(i))
    with session_scope() as db_session:
        run = Run(spec={"layers": []}, dataset="digits", config={}, status="running")
        db_session.add(run)
        db_session.flush()
        append_events(db_session, run.id, [("status", {"status": "queued"})])
        events = []
        for i in range(1, steps + 1):
            per_epoch = epochs_every or 1000
            events.append(("step", {"epoch": 1 + (i - 1) // per_epoch, "step": i, "loss": loss(i),
                                    "accuracy": min(1.0, i / steps), "epoch_progress": ((i - 1) % per_epoch + 1) / per_epoch,
                                    "ts": 1000.0 + i}))
            if epochs_every and i % epochs_every == 0:
                events.append(("epoch", {"epoch": i // epochs_every, "epochs": steps // epochs_every, "step": i,
                                         "train_loss": 0.5, "val_loss": 0.6, "lr": 0.1, "ts": 1000.0 + i}))
        append_events(db_session, run.id, events + (extra or []))
        return run.id


def _series(client, run_id: int, **params) -> dict:
    response = client.get(f"/api/runs/{run_id}/series", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _count(values: list) -> int:
    return sum(v is not None for v in values)


def test_a_long_curve_comes_as_at_most_points_per_series_keeping_ends_and_extremes(client):
    spike = {5000: 9.0, 12345: -3.0}  # a max and a min that a shape-preserving method must keep
    run_id = _make_run(20_000, loss=lambda i: spike.get(i, 1.0 / i))
    data = _series(client, run_id, points=500)
    steps = data["steps"]
    assert data["downsampled"] is True and data["rows"] == 20_000
    assert 0 < _count(steps["loss"]) <= 500 and 0 < _count(steps["accuracy"]) <= 500
    assert len(steps["step"]) <= 1000 and steps["step"] == sorted(steps["step"])
    loss = dict(zip(steps["step"], steps["loss"], strict=True))
    assert loss[1] == 1.0 and loss[20_000] == pytest.approx(1 / 20_000)  # first and last kept
    assert loss[5000] == 9.0 and loss[12345] == -3.0  # max and min kept
    assert data["last_seq"] == 20_001


def test_a_short_range_comes_whole_at_full_resolution(client):
    run_id = _make_run(20_000)
    data = _series(client, run_id, points=2000, **{"from": 1000, "to": 1999})
    assert data["downsampled"] is False and data["rows"] == 1000
    assert data["steps"]["step"] == list(range(1000, 2000))
    assert _count(data["steps"]["loss"]) == 1000 and _count(data["steps"]["accuracy"]) == 1000
    # by wall time (seconds since the first row) and by epoch too
    by_time = _series(client, run_id, x="time", **{"from": 0, "to": 99})
    assert by_time["steps"]["step"] == list(range(1, 101))
    by_epoch = _series(client, run_id, x="epoch", **{"from": 2, "to": 3})  # the third epoch (2.0 is the second's end)
    assert by_epoch["steps"]["step"] == list(range(2000, 3001))
    assert _count(_series(client, run_id, x="epoch", points=10, **{"from": 0, "to": 5})["steps"]["loss"]) <= 10


def test_rows_that_share_an_x_are_downsampled_by_their_order(client):
    run_id = _make_run(3000, extra=[("step", {"step": 3000 + i, "loss": 1.0, "ts": 5000.0}) for i in range(1, 3000)])
    data = _series(client, run_id, x="time", points=100, **{"from": 3999})  # 3000 rows at one second
    assert data["rows"] == 2999 and data["downsampled"] is True and _count(data["steps"]["loss"]) <= 100


def test_a_short_run_comes_whole_with_its_epoch_rows_and_latest_events(client):
    run_id = _make_run(300, epochs_every=100, extra=[
        ("evaluation", {"split": "val", "epoch": 3, "accuracy": 0.9, "confusion_matrix": [[1] * 100] * 100}),
        ("log", {"message": "hello"})])
    data = _series(client, run_id, events=10)
    assert data["steps"]["step"] == list(range(1, 301)) and data["downsampled"] is False
    assert [e["epoch"] for e in data["epochs"]] == [1, 2, 3] and data["epochs"][0]["val_loss"] == 0.6
    kinds = [e["kind"] for e in data["events"]]
    assert kinds == ["status", "evaluation", "log", "step"]  # the latest step event last, whole
    assert "confusion_matrix" not in data["events"][1]["data"]  # evaluations come slim
    assert data["events"][-1]["data"]["step"] == 300
    assert [e["seq"] for e in data["events"]][:3] == sorted(e["seq"] for e in data["events"][:3])


def test_a_resumed_runs_abandoned_tail_is_left_out(client):
    run_id = _make_run(50, extra=[("step", {"epoch": 1, "step": s, "loss": 2.0, "ts": 2000.0 + s}) for s in (30, 31)])
    data = _series(client, run_id)
    assert data["steps"]["step"] == [*range(1, 30), 30, 31]
    assert data["steps"]["loss"][-1] == 2.0


@pytest.mark.parametrize("params, field", [
    ({"points": 0}, "points"), ({"points": 10_001}, "points"), ({"points": "many"}, "points"),
    ({"x": "seconds"}, "x"), ({"from": "nan"}, "from"), ({"from": 10, "to": 5}, "from"), ({"events": -1}, "events"),
])
def test_bad_parameters_are_a_422_that_names_the_field(client, params, field):
    run_id = _make_run(10)
    response = client.get(f"/api/runs/{run_id}/series", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] and any(field in e["field"] for e in body["errors"]), body


def test_an_unknown_run_is_a_404(client):
    assert client.get("/api/runs/999999/series").status_code == 404
