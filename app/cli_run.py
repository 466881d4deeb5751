"""`trainboard run`: submit a run to a server and follow it, or train in this process."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                              "device": args.device, "loss": args.loss,
                              "optimizer": {"name": args.optimizer, "lr": args.lr}}
    if args.max_train_samples:
        config["max_train_samples"] = args.max_train_samples
    return config


class ProgressLine:
    """One self-rewriting terminal line: epoch x/y, a bar, loss and accuracy."""

    def __init__(self, epochs: int, stream=sys.stdout):
        self.epochs = epochs
        self.stream = stream
        self.tty = stream.isatty()

    def show(self, epoch: int, fraction: float, loss: float | None, accuracy: float | None, note: str = "") -> None:
        done = min(1.0, max(0.0, (epoch - 1 + fraction) / max(self.epochs, 1)))
        bar = "#" * int(done * 30)
        text = f"epoch {epoch}/{self.epochs} [{bar:<30}] {done * 100:5.1f}%"
        if loss is not None:
            text += f"  loss {loss:.4f}"
        if accuracy is not None:
            text += f"  acc {accuracy:.4f}"
        text += f"  {note}" if note else ""
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
        elif fraction >= 1.0 or note:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def run_remote(args: argparse.Namespace) -> int:
    import httpx

    body: dict[str, Any] = {"dataset": args.dataset, "config": _config(args)}
    if args.preset:
        body["preset"] = args.preset
    elif args.architecture:
        body["architecture_id"] = args.architecture
    else:
        body["spec"] = json.loads(open(args.spec).read())
    with httpx.Client(base_url=args.server.rstrip("/"), timeout=30) as client:
        response = client.post("/api/runs", json=body)
        if response.status_code != 201:
            print(f"error: {response.json().get('detail', response.text)}", file=sys.stderr)
            return 2
        run = response.json()
        print(f"run {run['id']} queued: {args.server.rstrip('/')}/runs/{run['id']}")
        progress = ProgressLine(run["config"]["epochs"])
        status = "queued"
        with client.stream("GET", f"/api/runs/{run['id']}/events", timeout=None) as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind:
                    data = json.loads(line[5:])
                    status = _show(progress, kind, data) or status
                    if kind == "end":
                        break
        final = client.get(f"/api/runs/{run['id']}").json()
    return _summary(progress, final)


def _show(progress: ProgressLine, kind: str, data: dict[str, Any]) -> str | None:
    if kind == "metric":
        fraction = float(data.get("epoch_progress", 0.0))
        progress.show(int(data.get("epoch", 1)), fraction, data.get("loss"), data.get("accuracy"))
    elif kind == "epoch":
        progress.show(int(data["epoch"]), 1.0, data.get("val_loss"), data.get("val_accuracy"),
                      note=f"val  ({data.get('epoch_time', 0):.1f}s)")
    elif kind == "status":
        return data.get("status")
    return None


def _summary(progress: ProgressLine, run: dict[str, Any]) -> int:
    if run["status"] == "completed":
        progress.line(f"completed: test accuracy {run.get('test_accuracy') or 0:.4f}, "
                      f"test loss {run.get('test_loss') or 0:.4f}, {run.get('train_time_s') or 0:.1f}s")
        return 0
    progress.line(f"{run['status']}: {run.get('failure_reason') or ''}")
    return 1


def run_local(args: argparse.Namespace) -> int:
    """Train in this process with the engine (no server, no database)."""
    from pathlib import Path

    from app.architectures import presets
    from app.architectures import service as architectures_service
    from app.core.config import get_settings
    from app.datasets import registry
    from app.engine.loop import train
    from app.engine.types import EngineError, TrainConfig, TrainJob

    settings = get_settings()
    if args.preset:
        preset = presets.get_preset(args.preset)
        spec, dataset = dict(preset.spec), args.dataset or preset.dataset
    else:
        spec, dataset = json.loads(open(args.spec).read()), args.dataset
    info = registry.get_dataset_info(dataset, settings.data_dir)
    spec.setdefault("input_shape", list(info.input_shape))
    architectures_service.validate(spec=spec)
    config = TrainConfig.from_dict(_config(args))
    data = registry.load_dataset(dataset, settings.data_dir, val_split=config.val_split, seed=config.seed)
    progress = ProgressLine(config.epochs)

    class Sink:
        def emit(self, kind: str, payload: dict[str, Any]) -> None:
            _show(progress, {"step": "metric"}.get(kind, kind), payload)

    workdir = Path(settings.data_dir) / "cli-runs" / time.strftime("%Y%m%d-%H%M%S")
    job = TrainJob(spec=spec, config=config, checkpoint_dir=workdir / "checkpoints", artifacts_dir=workdir / "export")
    try:
        result = train(job, data, Sink())
    except EngineError as exc:
        progress.line(f"failed: {exc}")
        return 1
    progress.line(f"completed: test accuracy {result.test_accuracy or 0:.4f}, test loss {result.test_loss or 0:.4f}, "
                  f"{result.train_time_s:.1f}s; exports in {workdir / 'export'}")
    return 0
