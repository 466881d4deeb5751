"""GET /api/runs/{id}/metrics.csv: the chart data of a run as CSV, read a page at a time and bounded."""

from __future__ import annotations

import csv
import io

from tests.runs.helpers import run_body

T0 = 1_700_000_000.0


def _record(run_id: int, events: list[tuple[str, dict]]) -> None:
    from app.core.db import session_scope
    from app.runs.events import append_events

    with session_scope() as db_session:
        append_events(db_session, run_id, events)


def _rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_csv_holds_every_step_and_epoch_row_of_the_charts(client):
    run_id = client.post("/api/runs", json=run_body(epochs=2)).json()["id"]
    _record(run_id, [
        ("status", {"status": "running"}),
        ("step", {"epoch": 1, "step": 1, "loss": 2.25, "accuracy": 0.125, "epoch_progress": 0.025, "ts": T0}),
        ("log", {"level": "info", "message": "not a curve"}),
        ("step", {"epoch": 1, "step": 20, "loss": 1.5, "accuracy": 0.5, "epoch_progress": 0.5, "ts": T0 + 1.5}),
        ("epoch", {"epoch": 1, "epochs": 2, "step": 40, "train_loss": 1.25, "train_accuracy": 0.625,
                   "val_loss": 1.125, "val_accuracy": 0.75, "lr": 0.001, "ts": T0 + 3.25}),
        ("step", {"epoch": 2, "step": 60, "loss": 0.5, "accuracy": 0.875, "epoch_progress": 0.5, "ts": T0 + 4.0}),
        ("epoch", {"epoch": 2, "epochs": 2, "step": 80, "train_loss": 0.25, "train_accuracy": 0.9375,
                   "val_loss": None, "val_accuracy": None, "lr": 0.0005, "ts": T0 + 6.0}),
    ])
    response = client.get(f"/api/runs/{run_id}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="run-{run_id}-metrics.csv"'
    assert response.text.splitlines()[0] == ("kind,epoch,step,fractional_epoch,time_s,wall_time,loss,accuracy,"
                                             "val_loss,val_accuracy,lr")
    rows = _rows(response)
    assert [(r["kind"], r["epoch"], r["step"], r["fractional_epoch"], r["time_s"]) for r in rows] == [
        ("step", "1", "1", "0.025", "0.0"), ("step", "1", "20", "0.5", "1.5"), ("epoch", "1", "40", "1", "3.25"),
        ("step", "2", "60", "1.5", "4.0"), ("epoch", "2", "80", "2", "6.0")]
    assert float(rows[0]["wall_time"]) == T0
    assert [(r["loss"], r["accuracy"], r["val_loss"], r["val_accuracy"], r["lr"]) for r in rows] == [
        ("2.25", "0.125", "", "", ""), ("1.5", "0.5", "", "", ""), ("1.25", "0.625", "1.125", "0.75", "0.001"),
        ("0.5", "0.875", "", "", ""), ("0.25", "0.9375", "", "", "0.0005")]


def test_the_csv_is_read_a_page_at_a_time_and_stops_at_its_bound(client, monkeypatch):
    from app.runs import service

    run_id = client.post("/api/runs", json=run_body()).json()["id"]
    _record(run_id, [("step", {"epoch": 1, "step": i, "loss": 1.0 / i, "accuracy": 0.5, "epoch_progress": i / 10,
                               "ts": T0 + i}) for i in range(1, 11)])
    monkeypatch.setattr(service, "CSV_PAGE_ROWS", 3)
    assert [r["step"] for r in _rows(client.get(f"/api/runs/{run_id}/metrics.csv"))] == [str(i) for i in range(1, 11)]
    monkeypatch.setattr(service, "MAX_CSV_ROWS", 7)
    assert [r["step"] for r in _rows(client.get(f"/api/runs/{run_id}/metrics.csv"))] == [str(i) for i in range(1, 8)]


def test_a_run_without_curves_has_the_header_only_and_an_unknown_run_is_404(client):
    run_id = client.post("/api/runs", json=run_body()).json()["id"]
    assert client.get(f"/api/runs/{run_id}/metrics.csv").text.splitlines() == [
        "kind,epoch,step,fractional_epoch,time_s,wall_time,loss,accuracy,val_loss,val_accuracy,lr"]
    missing = client.get("/api/runs/999/metrics.csv")
    assert missing.status_code == 404 and missing.json()["detail"] == "run 999 does not exist"
