"""Artifact downloads never leave the run's own folder, whatever the name or the stored path."""

from __future__ import annotations

import os

import pytest

from app.core.db import session_scope
from app.runs import service as runs_service
from app.runs.models import Artifact
from tests.runs.helpers import run_body


@pytest.fixture
def two_runs(client, data_dir):
    """Two queued runs; run A has a real weights file, run B a secret next door."""
    a = client.post("/api/runs", json=run_body()).json()["id"]
    b = client.post("/api/runs", json=run_body()).json()["id"]
    for run_id, name, content in ((a, "model.safetensors", b"weights of A"), (b, "secret.bin", b"B's secret")):
        folder = runs_service.run_dir(run_id) / "export"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(content)
    (data_dir / "outside.txt").write_bytes(b"outside every run")
    with session_scope() as db_session:
        db_session.add(Artifact(run_id=a, name="weights", path=f"run-{a}/export/model.safetensors", bytes=12))
    return a, b


def _store(run_id: int, name: str, path: str) -> None:
    with session_scope() as db_session:
        db_session.add(Artifact(run_id=run_id, name=name, path=path, bytes=1))


def test_a_stored_artifact_downloads(client, two_runs):
    a, _ = two_runs
    answer = client.get(f"/api/runs/{a}/artifacts/weights")
    assert answer.status_code == 200 and answer.content == b"weights of A"


@pytest.mark.parametrize("name", ["..", "../weights", "%2e%2e%2f", "%2e%2e%2fweights", "/etc/passwd",
                                  "%2Fetc%2Fpasswd", "..%2f..%2foutside.txt", "weights%00"])
def test_names_that_would_escape_are_not_found(client, two_runs, name):
    a, _ = two_runs
    answer = client.get(f"/api/runs/{a}/artifacts/{name}")
    # The client may normalise `..` away (then another route answers): no file may come back either way.
    assert answer.status_code < 500 and "attachment" not in answer.headers.get("content-disposition", "")
    if "%00" in name:  # refused before any route, on SQLite and PostgreSQL alike
        assert answer.status_code == 400 and "NUL byte" in answer.json()["detail"], answer.text
    elif f"/api/runs/{a}/artifacts/" in str(answer.url):  # the name reached the artifact route
        assert answer.status_code == 404, (str(answer.url), answer.text)
    assert b"outside every run" not in answer.content and b"secret" not in answer.content
    assert b"weights of A" not in answer.content


@pytest.mark.parametrize("stored", ["../outside.txt", "{b_dir}/export/secret.bin", "/etc/passwd",
                                    "run-{a}/../../outside.txt", "run-{a}/export/../../run-{b}/export/secret.bin"])
def test_a_stored_path_outside_the_run_folder_is_refused(client, two_runs, stored):
    """Rows are written by trainers; the containment check is what stops a path that leaves the run."""
    a, b = two_runs
    path = stored.format(a=a, b=b, b_dir=f"run-{b}")
    _store(a, "evil", path)
    answer = client.get(f"/api/runs/{a}/artifacts/evil")
    assert answer.status_code == 404
    assert b"outside every run" not in answer.content and b"secret" not in answer.content


@pytest.mark.parametrize("target", ["outside", "other_run"])
def test_a_symlink_planted_in_the_run_folder_is_refused(client, two_runs, data_dir, target):
    a, b = two_runs
    link = runs_service.run_dir(a) / "export" / "model.onnx"
    pointee = data_dir / "outside.txt" if target == "outside" else runs_service.run_dir(b) / "export" / "secret.bin"
    os.symlink(pointee, link)
    _store(a, "onnx", f"run-{a}/export/model.onnx")
    answer = client.get(f"/api/runs/{a}/artifacts/onnx")
    assert answer.status_code == 404
    assert b"outside every run" not in answer.content and b"secret" not in answer.content
