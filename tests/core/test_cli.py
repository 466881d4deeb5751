"""The `trainboard` command line: data import, runs in-process and on a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, LiveServer
from tests.runs.helpers import DIGITS_MLP

pytestmark = pytest.mark.xdist_group("cli")


def _cli(*args: str, data_dir, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_data_import_checks_files_and_lists_the_set(tmp_path, mnist_files):
    result = _cli("data", "import", "mnist", str(mnist_files), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "60000 training and 10000 test samples" in result.stdout
    listing = _cli("data", "list", data_dir=tmp_path).stdout
    assert any(line.startswith("mnist ") and "ready" in line for line in listing.splitlines())
    missing = _cli("data", "import", "mnist", str(tmp_path / "nowhere"), data_dir=tmp_path)
    assert missing.returncode == 2 and "error:" in missing.stderr


def test_run_in_process_prints_progress_and_the_result(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_MLP))
    result = _cli("run", "--spec", str(spec), "--dataset", "digits", "--epochs", "2", "--lr", "0.01",
                  data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch 2/2" in result.stdout
    accuracy = float(result.stdout.split("completed: test accuracy ")[1].split(",")[0])
    assert accuracy > 0.8


def test_run_on_a_server_follows_the_run_to_completion(tmp_path):
    server = LiveServer(tmp_path / "server").start()
    try:
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(DIGITS_MLP))
        result = _cli("run", "--spec", str(spec), "--dataset", "digits", "--epochs", "2", "--lr", "0.01",
                      "--server", server.url, data_dir=tmp_path / "client")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "queued" in result.stdout and "completed: test accuracy" in result.stdout
        with server.api() as api:
            assert api.get("/api/runs").json()["items"][0]["status"] == "completed"
        bad = _cli("run", "--spec", str(spec), "--dataset", "nope", "--server", server.url, data_dir=tmp_path)
        assert bad.returncode == 2 and "nope" in bad.stderr
    finally:
        server.stop()
