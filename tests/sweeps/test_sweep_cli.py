"""`trainboard sweep FILE`: a YAML file started on a live server and followed to the end; bad files and
bodies get the schema's message before anything is sent."""

from __future__ import annotations

import re

import pytest

from tests.conftest import LiveServer
from tests.core.test_cli import _cli

pytestmark = pytest.mark.xdist_group("sweeps-cli")

SWEEP_YAML = """\
name: lr x units
dataset: digits
preset: mnist-mlp
config:
  epochs: 2
space:
  config.optimizer.lr: [0.001, 0.01]
  spec.dense_units: [16, 32]
sampler: grid
"""


def test_sweep_file_runs_on_a_server_and_reports_the_best(tmp_path):
    server = LiveServer(tmp_path / "server", env={"TRAINBOARD_SLOTS": "2"}).start()
    try:
        sweep_file = tmp_path / "sweep.yaml"
        sweep_file.write_text(SWEEP_YAML)
        result = _cli("sweep", str(sweep_file), "--server", server.url, data_dir=tmp_path / "client", timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sweep 1 started: 4 trials" in result.stdout
        # not a terminal: a line per trial as it ends, then the best and the importances
        trial_lines = re.findall(r"^trial +(\d+) +val_accuracy (\d\.\d{4})", result.stdout, re.M)
        assert sorted(int(n) for n, _ in trial_lines) == [0, 1, 2, 3], result.stdout
        with server.api() as api:
            sweep = api.get("/api/sweeps/1").json()
        assert sweep["status"] == "completed"
        best = sweep["best"]
        assert f"completed: best trial {best['number']} (val_accuracy {best['value']:.4f})" in result.stdout
    finally:
        server.stop()


def test_bad_sweep_files_are_named_before_anything_is_sent(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("space: [unclosed\n")
    result = _cli("sweep", str(bad_yaml), "--server", "http://127.0.0.1:9", data_dir=tmp_path)
    assert result.returncode == 2 and "is not YAML or JSON" in result.stderr
    grid_range = tmp_path / "grid.json"
    grid_range.write_text('{"dataset": "digits", "sampler": "grid", '
                          '"space": {"config.optimizer.lr": {"type": "log_uniform", "low": 0.001, "high": 0.1}}}')
    result = _cli("sweep", str(grid_range), "--server", "http://127.0.0.1:9", data_dir=tmp_path)
    assert result.returncode == 2 and "a grid sampler takes lists only" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(SWEEP_YAML)
    result = _cli("sweep", str(good), "--server", "http://127.0.0.1:9", data_dir=tmp_path)
    assert result.returncode == 2 and "no Trainboard answers at http://127.0.0.1:9" in result.stderr
    assert _cli("sweep", str(tmp_path / "missing.yaml"), data_dir=tmp_path).stderr.startswith("error: ")
