"""The `trainboard` command line: data import, runs in-process and on a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, LiveServer, free_port
from tests.runs.helpers import DIGITS_MLP

pytestmark = pytest.mark.xdist_group("cli")


def _cli(*args: str, data_dir, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), **(env or {})}
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


def test_data_download_fetches_and_imports_from_the_mirror(tmp_path, dataset_mirror):
    result = _cli("data", "download", "mnist", data_dir=tmp_path, env={"TRAINBOARD_DATASET_MIRROR": dataset_mirror})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "downloading train-images-idx3-ubyte.gz" in result.stdout  # plain lines: not a terminal
    assert f"downloaded mnist: 60000 training and 10000 test samples in {tmp_path.resolve()}" in result.stdout
    listing = _cli("data", "list", data_dir=tmp_path).stdout
    assert any(line.startswith("mnist ") and "ready" in line for line in listing.splitlines())


def test_data_download_offline_says_how_to_import_by_hand(tmp_path):
    mirror = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = _cli("data", "download", "fashion-mnist", data_dir=tmp_path, env={"TRAINBOARD_DATASET_MIRROR": mirror})
    assert result.returncode != 0
    assert result.stderr.startswith("error: could not download fashion_mnist")
    assert f"{mirror}/fashion-mnist/train-images-idx3-ubyte.gz" in result.stderr
    assert "https://github.com/zalandoresearch/fashion-mnist" in result.stderr
    assert "trainboard data import fashion_mnist FOLDER" in result.stderr
    wrong = _cli("data", "download", "digits", data_dir=tmp_path)
    assert wrong.returncode != 0 and "only mnist, fashion-mnist and cifar10" in wrong.stderr


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
        assert "epoch 2/2: loss" in result.stdout and "samples/s" in result.stdout  # one line per epoch
        with server.api() as api:
            assert api.get("/api/runs").json()["items"][0]["status"] == "completed"
        bad = _cli("run", "--spec", str(spec), "--dataset", "nope", "--server", server.url, data_dir=tmp_path)
        assert bad.returncode == 2 and "nope" in bad.stderr
    finally:
        server.stop()


def _run_parser():
    import argparse

    from app.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["run"]


def test_run_options_are_the_schemas_settings_with_its_defaults():
    from app.cli_run import _config
    from app.runs.schemas import OPTIONAL_SECTIONS, TrainConfigIn, setting_fields

    settings = setting_fields()
    options = {a.dest: a for a in _run_parser()._actions if a.dest.startswith("config.")}
    switches = {f"config.{name}.enabled" for name in OPTIONAL_SECTIONS if f"config.{name}.name" not in settings}
    assert set(options) == set(settings) | switches  # every setting has an option, every option is a setting
    for path, info in settings.items():
        default = "none" if info.default is None or info.is_required() else info.default
        assert options[path].help == f"default: {default}", path
        assert options[path].default is None  # left out, the schema's default applies
    args = _run_parser().parse_args(["--preset", "mnist-mlp"])
    assert _config(args) == {} and TrainConfigIn.model_validate(_config(args)) == TrainConfigIn()
    args = _run_parser().parse_args([
        "--preset", "mnist-mlp", "--optimizer", "adamw", "--lr", "0.01", "--betas", "0.8", "0.95", "--epochs", "3",
        "--schedule", "step", "--step-size", "2", "--early-stopping", "--early-stopping-patience", "4",
        "--no-mixed-precision", "--device", "cpu"])
    assert _config(args) == {
        "optimizer": {"name": "adamw", "lr": 0.01, "betas": [0.8, 0.95]}, "epochs": 3, "device": "cpu",
        "schedule": {"name": "step", "step_size": 2}, "early_stopping": {"patience": 4}, "mixed_precision": False}


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "0", "config.epochs: Input should be greater than or equal to 1"),
    ("--seed", str(2**32), "config.seed: Input should be less than or equal to 4294967295"),
    ("--early-stopping-patience", "-1", "config.early_stopping.patience: Input should be greater than or equal to 0"),
])
def test_bad_settings_on_the_command_line_get_the_schemas_message(tmp_path, capsys, option, value, message):
    from app.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_MLP))
    assert main(["run", "--spec", str(spec), "--dataset", "digits", option, value]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_following_a_run_resumes_after_the_last_event_id_when_the_connection_drops():
    """The CLI reads the stream with httpx-sse; a dropped connection resumes after the last id."""
    import io

    import httpx
    from rich.console import Console

    from app.cli_run import RunProgress, follow

    def event(seq: int, kind: str, data: dict) -> bytes:
        return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    class Dropping(httpx.SyncByteStream):
        def __iter__(self):
            yield b"retry: 1000\n\n"
            yield event(1, "status", {"status": "running"})
            yield event(2, "metric", {"epoch": 1, "step": 5, "loss": 0.9, "accuracy": 0.5, "samples": 160,
                                      "epoch_progress": 0.5})
            raise httpx.ReadError("connection reset")

    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        headers = {"content-type": "text/event-stream"}
        if len(asked) == 1:
            return httpx.Response(200, headers=headers, stream=Dropping())
        body = (event(3, "epoch", {"epoch": 1, "epochs": 1, "step": 10, "train_loss": 0.5, "train_accuracy": 0.8,
                                   "val_loss": 0.6, "val_accuracy": 0.75, "epoch_time": 1.5,
                                   "samples_per_sec": 213.0})
                + event(4, "status", {"status": "completed"}) + b'event: end\ndata: {"status": "completed"}\n\n')
        return httpx.Response(200, headers=headers, content=body)

    out = io.StringIO()
    with httpx.Client(base_url="http://trainboard", transport=httpx.MockTransport(handler)) as client, \
            RunProgress(1, console=Console(file=out, width=200)) as progress:
        follow(client, 7, progress, retries=1)
    assert asked == [None, "2"]
    assert "epoch 1/1: loss 0.5000, acc 0.8000, val loss 0.6000, val acc 0.7500, 213 samples/s (1.5s)" in out.getvalue()
