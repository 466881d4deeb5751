"""Times in API answers carry their UTC offset (RFC 3339), so no client reads them as local time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.runs.helpers import DIGITS_MLP, run_body


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


def test_run_and_architecture_times_are_utc_with_an_offset(client):
    before = datetime.now(timezone.utc)
    run = client.post("/api/runs", json=run_body()).json()
    assert abs(_utc(run["created_at"]) - before) < timedelta(minutes=5)
    assert _utc(client.get(f"/api/runs/{run['id']}").json()["created_at"]) == _utc(run["created_at"])
    assert _utc(client.get("/api/runs").json()["items"][0]["created_at"]) == _utc(run["created_at"])
    architecture = client.post("/api/architectures", json={"name": "t", "spec": {**DIGITS_MLP, "input_shape": [1, 8, 8]}})
    assert architecture.status_code == 201, architecture.text
    assert abs(_utc(architecture.json()["updated_at"]) - before) < timedelta(minutes=5)
