"""`trainboard sweep FILE`: start a sweep on a server from a YAML or JSON file and follow it live.

The file holds the body of POST /api/sweeps (checked here first, so mistakes are named before anything is
sent). The command follows `/api/sweeps/{id}/events` (httpx-sse) and shows the trials as a live table on
a terminal (rich), or a line per trial that ends in a log or pipe. Ctrl-C cancels the sweep it started
(queued trials never start, running ones stop); `--detach` only starts it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

MAX_FILE_BYTES = 1024 * 1024
FINAL = ("completed", "failed", "cancelled", "interrupted", "pruned")


def read_request(path: str) -> dict[str, Any]:
    """The sweep request in a YAML or JSON file (JSON is YAML too); ValueError says what is wrong."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB: a sweep file is a short request")
    try:
        body = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not YAML or JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"{path} must hold one mapping: name, dataset, preset, config, space, sampler, trials…")
    return body


def check(body: dict[str, Any]) -> str | None:
    """The request's problems as the server would word them (None when the schema accepts it)."""
    from pydantic import ValidationError

    from app.sweeps.schemas import SweepCreate

    try:
        SweepCreate.model_validate(body)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {str(e['msg']).removeprefix('Value error, ')}"
                         for e in exc.errors())
    return None


class SweepDisplay:
    """The trials as a table (live on a terminal) or a line per trial as it ends."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False) if self.console.is_terminal else None
        self.reported: set[int] = set()

    def __enter__(self) -> SweepDisplay:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, sweep: dict[str, Any]) -> None:
        if self.live is not None:
            self.live.update(self.table(sweep), refresh=True)
            return
        for trial in sweep["trials"]:
            if trial["status"] in FINAL and trial["number"] not in self.reported:
                self.reported.add(trial["number"])
                self.console.print(self.line(sweep, trial))

    @staticmethod
    def line(sweep: dict[str, Any], trial: dict[str, Any]) -> str:
        from app.sweeps.space import label

        value = f"{sweep['objective']['metric']} {trial['value']:.4f}" if trial["value"] is not None else trial["status"]
        if trial.get("pruned_epoch"):
            value += f" at epoch {trial['pruned_epoch']}"
        return f"trial {trial['number']:>3}  {value:<28} {label(trial['params'])}  (run {trial['run_id']})"

    @staticmethod
    def table(sweep: dict[str, Any]) -> Table:
        from app.sweeps.space import short

        counts = " · ".join(f"{n} {s}" for s, n in sweep["counts"].items() if n)
        table = Table(title=f"sweep {sweep['id']} {sweep['name']}: {sweep['status']} ({counts or 'starting'})",
                      title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("status")
        for key in sweep["space"]:
            table.add_column(short(key), justify="right")
        table.add_column(sweep["objective"]["metric"], justify="right")
        best = (sweep.get("best") or {}).get("number")
        for trial in sweep["trials"]:
            value = "–" if trial["value"] is None else f"{trial['value']:.4f}" + (" ★" if trial["number"] == best else "")
            status = trial["status"] + (f" @{trial['pruned_epoch']}" if trial.get("pruned_epoch") else "")
            table.add_row(str(trial["number"]), status, *(str(trial["params"].get(k)) for k in sweep["space"]), value)
        return table


def sweep_command(args: argparse.Namespace) -> int:
    import httpx

    try:
        body = read_request(args.file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = check(body)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    server = (args.server or os.environ.get("TRAINBOARD_SERVER") or "http://127.0.0.1:8000").rstrip("/")
    token = os.environ.get("TRAINBOARD_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    console = Console(highlight=False)
    with httpx.Client(base_url=server, timeout=60, headers=headers) as client:
        try:
            response = client.post("/api/sweeps", json=body)
        except httpx.TransportError:
            print(f"error: no Trainboard answers at {server}: start one with `trainboard serve`, or pass --server URL",
                  file=sys.stderr)
            return 2
        if response.status_code != 201:
            detail = response.json().get("detail", response.text) if "json" in response.headers.get(
                "content-type", "") else response.text
            print(f"error: {detail}", file=sys.stderr)
            return 2
        sweep = response.json()
        console.print(f"sweep {sweep['id']} started: {sweep['trials_total']} trials, {server}/sweeps/{sweep['id']}")
        if args.detach:
            return 0
        try:
            with SweepDisplay(console) as display:
                sweep = follow(client, sweep["id"], display) or sweep
        except KeyboardInterrupt:
            client.post(f"/api/sweeps/{sweep['id']}/cancel")
            console.print(f"cancelled sweep {sweep['id']}: queued trials will not start, running ones stop")
            return 130
        sweep = client.get(f"/api/sweeps/{sweep['id']}").json()
    best = sweep.get("best")
    if best:
        console.print(f"{sweep['status']}: best trial {best['number']} ({sweep['objective']['metric']} "
                      f"{best['value']:.4f}) {server}/runs/{best['run_id']}")
    else:
        console.print(f"{sweep['status']}: no trial completed")
    if sweep.get("importances"):
        ranked = sorted(sweep["importances"].items(), key=lambda kv: -kv[1])
        console.print("importances: " + ", ".join(f"{k} {v:.0%}" for k, v in ranked))
    return 0 if sweep["status"] == "completed" and best else 1


def follow(client: Any, sweep_id: int, display: SweepDisplay) -> dict[str, Any] | None:
    """Show each `sweep` event until `end` (reconnecting after a dropped connection); the last one seen."""
    from app.cli_run import follow_sse

    seen: list[dict[str, Any]] = []

    def on_event(name: str, data: Any) -> None:
        if name == "sweep":
            seen[:] = [data]
            display.show(data)

    follow_sse(client, f"/api/sweeps/{sweep_id}/events", on_event)
    return seen[0] if seen else None


def add_parser(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="start a sweep from a YAML or JSON file on a server and follow it live")
    sweep.add_argument("file", help="the body of POST /api/sweeps, as YAML or JSON (see docs/sweeps.md)")
    sweep.add_argument("--server", default=None,
                       help="a running Trainboard (default TRAINBOARD_SERVER or http://127.0.0.1:8000)")
    sweep.add_argument("--detach", action="store_true", help="start the sweep and exit (follow it in the browser)")
    sweep.set_defaults(func=sweep_command)
