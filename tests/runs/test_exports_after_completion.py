"""A run is reported complete before its TorchScript and ONNX exports are written; they are recorded as
artifacts afterwards, and the run page's downloads panel says "exporting…" (and reloads itself) meanwhile
(issue 18, item 2). The trainer runs in this process (app.worker.train_run) over the real database store."""

from __future__ import annotations

from pathlib import Path

import torch

from app.core.db import session_scope
from app.runs import lifecycle
from app.runs import service as runs_service
from app.runs.sink import DbSink
from app.worker import train_run
from tests.runs.helpers import run_body

torch.set_num_threads(1)


class RecordingStore(DbSink):
    """The database store, noting the order of the reports and artifacts and what a reader saw meanwhile."""

    def __init__(self, run_id: int, client):
        super().__init__(run_id)
        self.client, self.calls, self.seen = client, [], {}

    def report(self, status, reason=None, result=None):
        self.calls.append(("report", status))
        return super().report(status, reason, result)

    def save_artifact(self, name: str, path: Path) -> None:
        self.calls.append(("artifact", name))
        if name == "torchscript":  # the run is complete already; what do its readers see?
            self.seen["status"] = self.client.get(f"/api/runs/{self.run_id}").json()["status"]
            self.seen["artifacts"] = {a["name"]: a["pending"]
                                      for a in self.client.get(f"/api/runs/{self.run_id}/artifacts").json()}
            self.seen["panel"] = self.client.get(f"/runs/{self.run_id}/downloads").text
            self.seen["download"] = self.client.get(f"/api/runs/{self.run_id}/artifacts/onnx")
        super().save_artifact(name, path)


def test_a_run_completes_before_its_exports_and_they_appear_afterwards(client):
    run_id = client.post("/api/runs", json=run_body(epochs=1)).json()["id"]
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, run_id, "test")
    store = RecordingStore(run_id, client)
    assert train_run(run_id, store) == 0

    order = store.calls
    assert order.index(("artifact", "weights")) < order.index(("report", "completed"))
    assert order.index(("report", "completed")) < order.index(("artifact", "torchscript")) < order.index(("artifact", "onnx"))
    # While the exports were written: completed, weights downloadable, the panel waiting for the rest.
    assert store.seen["status"] == "completed"
    assert store.seen["artifacts"] == {"weights": False, "torchscript": True, "onnx": True, "pytorch": False}
    early = store.seen["download"]  # an export asked for before it is written: try again shortly
    assert early.status_code == 503 and early.headers["retry-after"] == "2" and "still writing" in early.json()["detail"]
    assert "exporting…" in store.seen["panel"] and f'hx-get="/runs/{run_id}/downloads"' in store.seen["panel"]

    # Afterwards: every export is an artifact with its event, the marker is gone, the panel links them.
    listed = {a["name"]: a["pending"] for a in client.get(f"/api/runs/{run_id}/artifacts").json()}
    assert listed == {"weights": False, "torchscript": False, "onnx": False, "pytorch": False}
    onnx = client.get(f"/api/runs/{run_id}/artifacts/onnx")
    assert onnx.status_code == 200 and len(onnx.content) > 1000
    rows = client.get(f"/api/runs/{run_id}/metrics").json()
    kinds = [(r["kind"], r["payload"].get("status") or r["payload"].get("name")) for r in rows]
    assert kinds.index(("status", "completed")) < kinds.index(("artifact", "torchscript"))
    assert not runs_service.exports_pending(run_id)
    panel = client.get(f"/runs/{run_id}/downloads").text
    assert "exporting…" not in panel and "hx-get" not in panel and f"/api/runs/{run_id}/artifacts/onnx" in panel
    page = client.get(f"/runs/{run_id}").text
    assert f"/api/runs/{run_id}/artifacts/torchscript" in page


def test_the_exports_left_for_after_completion_are_the_engines():
    from app.engine.export import DEFERRABLE

    assert runs_service.DEFERRED_EXPORTS == DEFERRABLE
