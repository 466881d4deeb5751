"""The `trainboard` command line: data import, runs in-process and on a server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, LiveServer, database_url_for, free_port, run_sql
from tests.runs.helpers import DIGITS_MLP

pytestmark = pytest.mark.xdist_group("cli")


def _cli(*args: str, data_dir, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The database a server on the same data dir uses (SQLite in it, or its PostgreSQL database).
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), "TRAINBOARD_DATABASE_URL": database_url_for(data_dir),
           **(env or {})}
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


EPOCH_LINE = re.compile(r"^epoch (\d+)/2 - \d+\.\ds - loss: (\d\.\d{4}) - accuracy: (\d\.\d{4}) - "
                        r"val_loss: (\d\.\d{4}) - val_accuracy: (\d\.\d{4}) - [\d,]+ samples/s$", re.M)


def test_run_in_process_prints_a_line_per_epoch_and_records_the_run_for_the_dashboard(tmp_path):
    """`trainboard run` without --server trains here, prints one line per epoch as Keras' fit does, and
    records the run in the data dir's database: a server started on that data dir lists it, with its
    metrics, evaluations and exports."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_MLP))
    data_dir = tmp_path / "data"
    result = _cli("run", "--spec", str(spec), "--dataset", "digits", "--epochs", "2", "--lr", "0.01",
                  "--name", "from the command line", data_dir=data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = EPOCH_LINE.findall(result.stdout)
    assert [int(epoch) for epoch, *_ in lines] == [1, 2], result.stdout
    accuracy = float(result.stdout.split("completed: test accuracy ")[1].split(",")[0])
    assert accuracy > 0.8
    run_id = int(re.search(r"^run (\d+) recorded in ", result.stdout, re.M).group(1))

    server = LiveServer(data_dir).start()
    try:
        with server.api() as api:
            listed = api.get("/api/runs").json()["items"]
            assert [(r["id"], r["name"], r["status"]) for r in listed] == [(run_id, "from the command line", "completed")]
            run = listed[0]
            assert run["epoch"] == 2 and f"{run['test_accuracy']:.4f}" == f"{accuracy:.4f}"
            rows = api.get(f"/api/runs/{run_id}/metrics").json()
            assert [r["payload"]["status"] for r in rows if r["kind"] == "status"] == [
                "queued", "starting", "running", "completed"]
            epochs = [r["payload"] for r in rows if r["kind"] == "epoch"]
            printed = [tuple(float(v) for v in values) for _, *values in lines]
            assert printed == [tuple(round(e[k], 4) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"))
                               for e in epochs]  # the lines show what the dashboard shows
            assert any(r["kind"] == "step" for r in rows)
            assert api.get(f"/api/runs/{run_id}/evaluation").json()["accuracy"] == run["test_accuracy"]
            assert "weights" in {a["name"] for a in api.get(f"/api/runs/{run_id}/artifacts").json()}
    finally:
        server.stop()


def test_ctrl_c_cancels_a_recorded_run_at_its_next_step(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_MLP))
    data_dir = tmp_path / "data"
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), "TRAINBOARD_DATABASE_URL": database_url_for(data_dir)}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--spec", str(spec), "--dataset", "digits",
                                "--epochs", "500", "--batch-size", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _sql(data_dir, "select id from run_events where kind = 'step'"):
            if process.poll() is not None:
                pytest.fail(f"the run ended before training (exit {process.returncode}): {process.stdout.read()}")
            assert time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert "cancelled: cancelled by the user" in output
    assert _sql(data_dir, "select status, failure_reason from runs") == [("cancelled", "cancelled by the user")]


def _sql(data_dir, statement: str) -> list[tuple]:
    if database_url_for(data_dir).startswith("sqlite"):
        # Read-only, without the app's engine (its WAL switch and closing `PRAGMA optimize` write): the
        # test's polling must not take locks from the CLI that is migrating and writing the same file.
        path = data_dir / "trainboard.db"
        if not path.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
                return connection.execute(statement).fetchall()
        except sqlite3.Error:  # the tables are not there yet
            return []
    try:
        return run_sql(database_url_for(data_dir), statement)
    except Exception:  # noqa: BLE001  (the CLI has not created the tables yet)
        return []


def test_no_record_trains_without_the_database(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DIGITS_MLP))
    data_dir = tmp_path / "data"
    result = _cli("run", "--spec", str(spec), "--dataset", "digits", "--epochs", "1", "--no-record", data_dir=data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^epoch 1/1 - .* - val_accuracy: \d\.\d{4} - ", result.stdout, re.M)
    assert "completed: test accuracy" in result.stdout and "recorded" not in result.stdout
    assert list((data_dir / "cli-runs").glob("*/export/model.safetensors"))
    assert not (data_dir / "trainboard.db").exists()  # nothing recorded (on SQLite: no database at all)


def test_run_on_a_server_follows_the_run_to_completion(tmp_path):
    server = LiveServer(tmp_path / "server").start()
    try:
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(DIGITS_MLP))
        result = _cli("run", "--spec", str(spec), "--dataset", "digits", "--epochs", "2", "--lr", "0.01",
                      "--server", server.url, data_dir=tmp_path / "client")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "queued" in result.stdout and "completed: test accuracy" in result.stdout
        assert [int(epoch) for epoch, *_ in EPOCH_LINE.findall(result.stdout)] == [1, 2]  # one line per epoch
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
    assert ("epoch 1/1 - 1.5s - loss: 0.5000 - accuracy: 0.8000 - val_loss: 0.6000 - val_accuracy: 0.7500 - "
            "213 samples/s") in out.getvalue()


def test_the_live_bar_shows_the_current_epoch_and_the_epoch_lines_stay():
    """On a terminal: the bar follows the current epoch only (steps of the epoch, running loss and
    accuracy, samples/s, ETA) and starts over for the next; each finished epoch leaves its line."""
    from rich.console import Console

    from app.cli_run import RunProgress

    out = io.StringIO()
    progress = RunProgress(2, console=Console(file=out, width=120, force_terminal=True))
    task = progress.bar.tasks[0]

    def step(epoch: int, done: int, elapsed: float) -> None:
        progress.show("metric", {"epoch": epoch, "step": (epoch - 1) * 40 + done, "loss": 9.0, "accuracy": 0.0,
                                 "epoch_step": done, "epoch_steps": 40, "epoch_progress": done / 40,
                                 "epoch_loss": 0.75, "epoch_accuracy": 0.625, "epoch_elapsed": elapsed,
                                 "samples_per_sec": 123.4})

    step(1, 10, 2.0)
    assert (task.completed, task.total, task.fields["epoch"], task.fields["steps"]) == (10, 40, 1, "10/40")
    assert task.fields["figures"] == "loss: 0.7500 - accuracy: 0.6250 - 123 samples/s - ETA 6s"
    progress.show("epoch", {"epoch": 1, "epochs": 2, "step": 40, "train_loss": 0.5, "train_accuracy": 0.8,
                            "val_loss": None, "val_accuracy": None, "epoch_time": 8.04, "samples_per_sec": 159.0})
    assert (task.completed, task.fields["epoch"], task.fields["steps"]) == (0, 2, "")  # the next epoch's bar
    step(2, 30, 3.0)
    assert (task.completed, task.fields["epoch"], task.fields["steps"]) == (30, 2, "30/40")
    assert task.fields["figures"].endswith("ETA 1s")
    progress.show("epoch", {"epoch": 2, "epochs": 2, "step": 80, "train_loss": 0.25, "train_accuracy": 0.9,
                            "val_loss": 0.3, "val_accuracy": 0.85, "epoch_time": 4.0, "samples_per_sec": 320.0})
    assert not task.visible  # nothing left to train: no bar
    printed = out.getvalue()
    # Without a validation split there is nothing to say about it: no bare "val".
    assert "epoch 1/2 - 8.0s - loss: 0.5000 - accuracy: 0.8000 - 159 samples/s\n" in printed
    assert "epoch 2/2 - 4.0s - loss: 0.2500 - accuracy: 0.9000 - val_loss: 0.3000 - val_accuracy: 0.8500 - 320 samples/s" in printed


def test_warnings_of_the_run_are_printed_and_info_logs_are_not():
    """A gradient warning (or any warning/error log of the run) gets its own line, as the run page's alert."""
    from rich.console import Console

    from app.cli_run import RunProgress

    out = io.StringIO()
    progress = RunProgress(1, console=Console(file=out, width=200))
    progress.show("log", {"level": "info", "message": "training on cpu"})
    progress.show("log", {"level": "warning", "epoch": 1, "step": 7,
                          "message": "exploding gradients in layer dense_1: norm 3.2e+03"})
    printed = out.getvalue()
    assert "warning: exploding gradients in layer dense_1: norm 3.2e+03" in printed
    assert "training on cpu" not in printed
