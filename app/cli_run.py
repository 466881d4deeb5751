"""`trainboard run`: submit a run to a server and follow it, or train in this process."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any, get_args, get_origin

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

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
    """A rich progress bar for one run (epoch, step, loss, accuracy, samples/s, ETA) and one line
    per finished epoch, so a log or a pipe keeps the history too."""

    def __init__(self, epochs: int, console: Console | None = None):
        self.epochs = max(epochs, 1)
        self.console = console or Console(highlight=False)
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("step {task.fields[step]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("acc {task.fields[accuracy]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("train", total=self.epochs, epoch=0, epochs=self.epochs, step="–",
                                      loss="–", accuracy="–", speed="–")
        self._last_samples: tuple[float, int] | None = None  # (when, samples so far) of the last step row
        self._speed: float | None = None

    def __enter__(self) -> RunProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def show(self, kind: str, data: dict[str, Any]) -> str | None:
        """Show one event (SSE names: metric, epoch, status, ...); returns the status of a status event."""
        if kind == "metric":
            epoch = int(data.get("epoch", 1))
            fields: dict[str, Any] = {"epoch": epoch, "step": data.get("step", "–"),
                                      "loss": _number(data.get("loss")), "accuracy": _number(data.get("accuracy"))}
            samples, now = data.get("samples"), time.monotonic()
            if samples is not None:
                if self._last_samples and now > self._last_samples[0] and samples > self._last_samples[1]:
                    rate = (samples - self._last_samples[1]) / (now - self._last_samples[0])
                    self._speed = rate if self._speed is None else 0.7 * self._speed + 0.3 * rate  # smoothed
                    fields["speed"] = f"{self._speed:,.0f}"
                self._last_samples = (now, samples)
            done = epoch - 1 + float(data.get("epoch_progress", 0.0))
            self.bar.update(self.task, completed=min(done, self.epochs), **fields)
        elif kind == "epoch":
            epoch = int(data["epoch"])
            speed = data.get("samples_per_sec")
            self.bar.update(self.task, completed=min(epoch, self.epochs), epoch=epoch, step=data.get("step", "–"),
                            speed=f"{speed:,.0f}" if speed else "–")
            text = (f"epoch {epoch}/{data.get('epochs', self.epochs)}: loss {_number(data.get('train_loss'))}, "
                    f"acc {_number(data.get('train_accuracy'))}")
            if data.get("val_loss") is not None:
                text += f", val loss {_number(data.get('val_loss'))}, val acc {_number(data.get('val_accuracy'))}"
            if speed:
                text += f", {speed:,.0f} samples/s"
            self.line(text + f" ({data.get('epoch_time') or 0:.1f}s)")
        elif kind == "status":
            if data.get("status") not in ("queued", "running") or data.get("reason"):
                self.line(f"status: {data.get('status')}" + (f" ({data['reason']})" if data.get("reason") else ""))
            return data.get("status")
        return None

    def line(self, text: str) -> None:
        self.bar.console.print(text, markup=False, soft_wrap=True)  # whole lines in logs and pipes


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def run_remote(args: argparse.Namespace) -> int:
    import httpx

    body: dict[str, Any] = {"dataset": args.dataset, "config": _config(args)}
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
    """Read the run's event stream (httpx-sse) until its `end` event; if the connection drops,
    resume after the last event id, as a browser would."""
    import httpx
    from httpx_sse import connect_sse

    last_id: str | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(client, "GET", f"/api/runs/{run_id}/events", headers=headers,
                             timeout=httpx.Timeout(30, read=None)) as source:
                for sse in source.iter_sse():
                    if sse.event == "end":
                        return
                    if sse.id:
                        last_id = sse.id
                    if sse.data:
                        progress.show(sse.event, json.loads(sse.data))
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


def local_model(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """(spec, data set) of a run in this process: a spec file as given, else what the server would train
    (`presets.model_for`: the preset fitted to the data set, or the data set's default model)."""
    from app.architectures import presets
    from app.architectures import service as architectures_service
    from app.core.config import get_settings
    from app.core.errors import InvalidInput
    from app.datasets import registry

    dataset = args.dataset or (presets.get_preset(args.preset).dataset if args.preset else None)
    if args.architecture or not dataset:
        raise InvalidInput("--architecture needs --server" if args.architecture else "choose a data set: --dataset NAME")
    info = registry.get_dataset_info(dataset, get_settings().data_dir)
    if args.spec:
        spec = json.loads(open(args.spec).read())
        spec.setdefault("input_shape", list(info.input_shape))
    else:
        spec = presets.model_for(args.preset, info)
    architectures_service.validate(spec=spec)
    return spec, dataset


def run_local(args: argparse.Namespace) -> int:
    """Train in this process with the engine (no server, no database)."""
    from pathlib import Path

    from app.engine.types import EngineError, TrainConfig, TrainJob
    from app.runs.schemas import TrainConfigIn

    config = TrainConfig.from_dict(TrainConfigIn.model_validate(_config(args)).to_engine_dict())  # before torch

    from app.core.config import get_settings
    from app.datasets import registry
    from app.engine.loop import train

    settings = get_settings()
    spec, dataset = local_model(args)
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
