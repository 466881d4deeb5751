"""`trainboard run`: submit a run to a server and follow it, or train in this process."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, get_args, get_origin

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from app.runs.schemas import OPTIONAL_SECTIONS, nest, setting_choices, setting_fields, setting_kinds

SETTINGS = setting_fields()


def setting_options() -> dict[str, str]:
    """Each run setting's option, by its path in a run body, generated from the schema: `--epochs`,
    `--lr`, `--optimizer` (a section's name), `--early-stopping-patience` (a key two sections share),
    and `--early-stopping` for an optional section that has no name to choose."""
    shared = Counter(path.rpartition(".")[2] for path in SETTINGS)
    options = {}
    for path in SETTINGS:
        section, _, key = path.removeprefix("config.").rpartition(".")
        flag = section if key == "name" else f"{section}-{key}" if shared[key] > 1 else key
        options[path] = "--" + flag.replace("_", "-")
    for section in OPTIONAL_SECTIONS:
        if f"config.{section}.name" not in SETTINGS:
            options[f"config.{section}.enabled"] = "--" + section.replace("_", "-")
    return options


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per run setting; left out, the schema's default applies (its help says which)."""
    for path, flag in setting_options().items():
        info = SETTINGS.get(path)
        if info is None:
            parser.add_argument(flag, dest=path, action="store_true", default=None, help="switch this section on")
            continue
        kinds = setting_kinds(info) - {type(None)}
        default = "none" if info.default is None or info.is_required() else info.default
        kwargs: dict[str, Any] = {"dest": path, "default": None, "help": f"default: {default}"}
        if kinds == {bool}:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices := setting_choices(info):
            kwargs["choices"] = choices
        else:
            items = next((get_args(kind) for kind in get_args(info.annotation) if get_origin(kind) is tuple), ())
            kwargs.update(type=int if int in kinds else float if float in kinds else str,
                          metavar=path.rpartition(".")[2].upper(), nargs=len(items) or None)
        parser.add_argument(flag, **kwargs)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The run `config` the options give (only what was given: the schema fills in the rest)."""
    return nest({path: getattr(args, path, None) for path in setting_options()})


class RunProgress:
    """What `trainboard run` prints while a run trains, the way Keras' `fit` does: one line per
    finished epoch that stays (loss, accuracy, val_loss, val_accuracy, its time and speed), and on a
    terminal a live bar for the current epoch only (steps done of the epoch, the epoch's running loss
    and accuracy, samples/s, the epoch's ETA). Logs and pipes get the epoch lines alone."""

    def __init__(self, epochs: int, console: Console | None = None):
        self.epochs = max(epochs, 1)
        self.console = console or Console(highlight=False)
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[figures]}"),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("epoch", total=1, epoch=1, epochs=self.epochs, steps="", figures="")
        self._last_samples: tuple[float, int] | None = None  # (when, samples so far): speed without the figure
        self._speed: float | None = None

    def __enter__(self) -> RunProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def show(self, kind: str, data: dict[str, Any]) -> str | None:
        """Show one event (SSE names: metric, epoch, status, ...); returns the status of a status event."""
        if kind == "metric":
            self._step(data)
        elif kind == "epoch":
            epoch = int(data["epoch"])
            self.line(epoch_line(data, self.epochs))
            if epoch < self.epochs:  # the bar starts over for the next epoch
                self.bar.reset(self.task, total=1, epoch=epoch + 1, epochs=self.epochs, steps="", figures="")
            else:
                self.bar.update(self.task, visible=False)
        elif kind == "log" and data.get("level") in ("warning", "error"):
            # What the run page shows as an alert (e.g. exploding or vanishing gradients in a layer).
            self.line(f"{data['level']}: {data.get('message', '')}")
        elif kind == "status":
            if data.get("status") not in ("queued", "running") or data.get("reason"):
                self.line(f"status: {data.get('status')}" + (f" ({data['reason']})" if data.get("reason") else ""))
            return data.get("status")
        return None

    def _step(self, data: dict[str, Any]) -> None:
        done, total = data.get("epoch_step"), data.get("epoch_steps")
        fraction = done / total if done is not None and total else float(data.get("epoch_progress") or 0.0)
        speed = data.get("samples_per_sec")
        if speed is None:  # a trainer that does not send it (a script's run): from the samples count
            samples, now = data.get("samples"), time.monotonic()
            if samples is not None:
                if self._last_samples and now > self._last_samples[0] and samples > self._last_samples[1]:
                    rate = (samples - self._last_samples[1]) / (now - self._last_samples[0])
                    self._speed = rate if self._speed is None else 0.7 * self._speed + 0.3 * rate
                self._last_samples = (now, samples)
            speed = self._speed
        figures = [f"loss: {_number(data.get('epoch_loss', data.get('loss')))}",
                   f"accuracy: {_number(data.get('epoch_accuracy', data.get('accuracy')))}"]
        if speed:
            figures.append(f"{speed:,.0f} samples/s")
        elapsed = data.get("epoch_elapsed")
        if elapsed is not None and 0 < fraction < 1:
            figures.append(f"ETA {duration(elapsed / fraction * (1 - fraction), whole=True)}")
        steps = f"{done:,}/{total:,}" if done is not None and total else f"{fraction:.0%}"
        self.bar.update(self.task, total=total or 1, completed=done if total else fraction,
                        epoch=int(data.get("epoch", 1)), steps=steps, figures=" - ".join(figures))

    def line(self, text: str) -> None:
        # A terminal wraps long lines itself (rich knows how many rows they take, so the live bar below
        # never overwrites them); logs and pipes get each line whole.
        self.console.print(text, markup=False, highlight=False, soft_wrap=not self.console.is_terminal)


def epoch_line(data: dict[str, Any], epochs: int) -> str:
    """A finished epoch as Keras' `fit` prints it: `epoch 1/5 - 3.2s - loss: 0.4637 - accuracy: 0.8651
    - val_loss: 0.1464 - val_accuracy: 0.9577 - 1,412 samples/s` (no val_* without a validation split)."""
    parts = [f"epoch {data['epoch']}/{data.get('epochs') or epochs}"]
    if data.get("epoch_time") is not None:
        parts.append(duration(data["epoch_time"]))
    parts += [f"loss: {_number(data.get('train_loss'))}", f"accuracy: {_number(data.get('train_accuracy'))}"]
    if data.get("val_loss") is not None:
        parts += [f"val_loss: {_number(data['val_loss'])}", f"val_accuracy: {_number(data.get('val_accuracy'))}"]
    if data.get("samples_per_sec"):
        parts.append(f"{data['samples_per_sec']:,.0f} samples/s")
    return " - ".join(parts)


def duration(seconds: float, whole: bool = False) -> str:
    """3.24 → '3.2s' (whole: '3s'), 754 → '12m 34s', 7300 → '2h 01m'."""
    if seconds < 60:
        return f"{max(seconds, 0):.{0 if whole else 1}f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def run_remote(args: argparse.Namespace) -> int:
    import httpx

    body: dict[str, Any] = {"dataset": args.dataset, "config": _config(args)}
    if args.name:
        body["name"] = args.name
    if args.preset:
        body["preset"] = args.preset
    elif args.architecture:
        body["architecture_id"] = args.architecture
    elif args.spec:
        body["spec"] = json.loads(open(args.spec).read())
    token = os.environ.get("TRAINBOARD_TOKEN")  # a personal API token, on a server with accounts
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.server.rstrip("/"), timeout=30, headers=headers) as client:
        response = client.post("/api/runs", json=body)
        if response.status_code != 201:
            print(f"error: {response.json().get('detail', response.text)}", file=sys.stderr)
            return 2
        run = response.json()
        print(f"run {run['id']} queued: {args.server.rstrip('/')}/runs/{run['id']}", flush=True)
        with RunProgress(run["config"]["epochs"]) as progress:
            follow(client, run["id"], progress)
        final = client.get(f"/api/runs/{run['id']}").json()
    return _summary(progress, final)


def follow(client: Any, run_id: int, progress: RunProgress, retries: int = 5) -> None:
    """Show the run's events until its `end` event."""
    follow_sse(client, f"/api/runs/{run_id}/events", progress.show, retries)


def follow_sse(client: Any, url: str, on_event: Callable[[str, Any], Any], retries: int = 5) -> None:
    """Read an event stream (httpx-sse) until its `end` event, handing each event's name and JSON data to
    `on_event`; if the connection drops, resume after the last event id, as a browser would."""
    import httpx
    from httpx_sse import connect_sse

    last_id: str | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(client, "GET", url, headers=headers, timeout=httpx.Timeout(30, read=None)) as source:
                for sse in source.iter_sse():
                    if sse.event == "end":
                        return
                    if sse.id:
                        last_id = sse.id
                    if sse.data:
                        on_event(sse.event, json.loads(sse.data))
                        failures = 0
        except httpx.TransportError:
            failures += 1
            if failures > retries:
                raise
            time.sleep(min(2 ** failures * 0.25, 5))


def _summary(progress: RunProgress, run: dict[str, Any]) -> int:
    if run["status"] == "completed":
        progress.line(f"completed: test accuracy {run.get('test_accuracy') or 0:.4f}, "
                      f"test loss {run.get('test_loss') or 0:.4f}, {run.get('train_time_s') or 0:.1f}s")
        return 0
    progress.line(f"{run['status']}: {run.get('failure_reason') or ''}")
    return 1


def _run_create(args: argparse.Namespace) -> Any:
    """The run the options describe, as the one body POST /api/runs validates (RunCreate)."""
    from app.runs.schemas import RunCreate, TrainConfigIn

    config = TrainConfigIn.model_validate(_config(args))  # first: its messages name config.* fields
    spec = json.loads(open(args.spec).read()) if args.spec else None
    return RunCreate(name=args.name or "", preset=args.preset, architecture_id=args.architecture, spec=spec,
                     dataset=args.dataset, config=config)


def run_local(args: argparse.Namespace) -> int:
    """Train in this process. The run is validated as the server validates it and recorded in the
    data dir's database, so a server on the same data dir lists it (live), and its page, compare,
    cancel and resume work as for the server's own runs; `--no-record` keeps it off the record."""
    run_in = _run_create(args)  # before torch: bad settings answer at once
    return _run_unrecorded(run_in) if args.no_record else _run_recorded(run_in)


def _run_recorded(run_in: Any) -> int:
    import signal
    import socket

    from app.core.config import get_settings
    from app.core.db import session_scope, upgrade_database
    from app.runs import service as runs_service
    from app.runs.sink import DbSink
    from app.worker import StopFlag, train_run

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database()
    with session_scope() as db_session:
        run = runs_service.create_claimed(db_session=db_session, run_in=run_in, owner=f"cli:{socket.gethostname()}")
        run_id, epochs = run.id, run.epochs_total
    print(f"run {run_id} recorded in {settings.data_dir} (trainboard serve shows it at /runs/{run_id})", flush=True)
    stop = StopFlag()

    def interrupted(*_: object) -> None:
        stop.set()  # the run stops at its next step and is recorded as cancelled
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    previous = signal.signal(signal.SIGINT, interrupted)
    progress = RunProgress(epochs)
    try:
        with progress:
            train_run(run_id, DbSink(run_id), stop,
                      watch=lambda kind, payload: progress.show({"step": "metric"}.get(kind, kind), payload))
    except KeyboardInterrupt:  # the second Ctrl-C: no time to finish the epoch, but the record says so
        from app.runs import lifecycle

        with session_scope() as db_session:
            lifecycle.interrupt(db_session, run_id, "stopped at once by a second Ctrl-C: resume it to go on")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    with session_scope(write=False) as db_session:
        run = runs_service.get(db_session=db_session, run_id=run_id)
        final = {"status": run.status, "failure_reason": run.failure_reason, "test_accuracy": run.test_accuracy,
                 "test_loss": run.test_loss, "train_time_s": run.train_time_s}
    code = _summary(progress, final)
    progress.line(f"run {run_id}: checkpoints and exports in {runs_service.run_dir(run_id)}")
    return code


def _run_unrecorded(run_in: Any) -> int:
    """Train in this process with the engine alone: no database, files under the data dir's cli-runs/."""
    from pathlib import Path

    from app.core.config import get_settings
    from app.core.errors import InvalidInput
    from app.runs import service as runs_service

    if run_in.architecture_id is not None:
        raise InvalidInput("--architecture reads the saved architectures of the data dir's database: "
                           "leave out --no-record, or give the model with --spec FILE")
    spec, dataset, _, config_in = runs_service.prepare(db_session=None, run_in=run_in)  # the server's checks

    from app.datasets import registry
    from app.engine.loop import train
    from app.engine.types import EngineError, TrainConfig, TrainJob

    settings = get_settings()
    config = TrainConfig.from_dict(config_in.to_engine_dict())
    data = registry.load_dataset(dataset, settings.data_dir, val_split=config.val_split, seed=config.seed)
    progress = RunProgress(config.epochs)

    class Sink:
        def emit(self, kind: str, payload: dict[str, Any]) -> None:
            progress.show({"step": "metric"}.get(kind, kind), payload)

    workdir = Path(settings.data_dir) / "cli-runs" / time.strftime("%Y%m%d-%H%M%S")
    job = TrainJob(spec=spec, config=config, checkpoint_dir=workdir / "checkpoints", artifacts_dir=workdir / "export")
    try:
        with progress:
            result = train(job, data, Sink())
    except EngineError as exc:
        progress.line(f"failed: {exc}")
        return 1
    progress.line(f"completed: test accuracy {result.test_accuracy or 0:.4f}, test loss {result.test_loss or 0:.4f}, "
                  f"{result.train_time_s:.1f}s; exports in {workdir / 'export'}")
    return 0
