"""Helpers for run tests: specs, waiting on a live server."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import httpx

DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}
MOONS_MLP = {"layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                        {"type": "Dense", "units": 2, "activation": "softmax"}]}


def run_body(spec=None, dataset="digits", **config: Any) -> dict[str, Any]:
    base = {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.01}}
    return {"spec": spec or DIGITS_MLP, "dataset": dataset, "config": {**base, **config}}


def slow_body(**config: Any) -> dict[str, Any]:
    """A run that keeps training for a long time (cancelled or killed by the test)."""
    return run_body(epochs=500, batch_size=1, **config)


def wait_for(api: httpx.Client, run_id: int, predicate, timeout: float = 60.0, what: str = "") -> dict:
    deadline = time.monotonic() + timeout
    run = {}
    while time.monotonic() < deadline:
        run = api.get(f"/api/runs/{run_id}").json()
        if predicate(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach {what or 'the state'} in {timeout}s: {run}")


def wait_status(api: httpx.Client, run_id: int, *statuses: str, timeout: float = 60.0) -> dict:
    return wait_for(api, run_id, lambda r: r["status"] in statuses, timeout, "/".join(statuses))


EXPORTS = {"weights", "torchscript", "onnx"}
DEFERRED_EXPORTS = {"torchscript", "onnx"}  # written after `completed` (app/runs/service.py DEFERRED_EXPORTS)


def wait_exports(api: httpx.Client, run_id: int, timeout: float = 60.0) -> set[str]:
    """A completed run's artifact names once its exports are all recorded and their `artifact` events stored:
    TorchScript and ONNX are written after the run is reported complete (app/worker.py), so `completed`
    does not mean they are there; each is recorded, then its event follows (a test reading the run's
    events right after must not see one more arrive)."""
    deadline = time.monotonic() + timeout
    names: set[str] = set()
    while time.monotonic() < deadline:
        names = {a["name"] for a in api.get(f"/api/runs/{run_id}/artifacts").json() if not a["pending"]}
        if names >= EXPORTS:
            rows = api.get(f"/api/runs/{run_id}/metrics", params={"limit": 10000}).json()
            if {r["payload"].get("name") for r in rows if r["kind"] == "artifact"} >= DEFERRED_EXPORTS:
                return names
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} has only the artifacts {sorted(names)} after {timeout}s")


def wait_metrics(api: httpx.Client, run_id: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api.get(f"/api/runs/{run_id}/metrics").json()
        if any(r["kind"] in ("step", "epoch") for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} wrote no metric rows in {timeout}s")


def run_in_thread(coroutine_function):
    """asyncio.run in a fresh thread: Playwright's sync API may own this thread's event loop."""
    outcome: list = []

    def target():
        try:
            outcome.append(("ok", asyncio.run(coroutine_function())))
        except BaseException as exc:  # re-raised in the test's thread
            outcome.append(("error", exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # "pid (comm) S ...": the state follows the last ") "
        return stat.read().rsplit(") ", 1)[1][0] != "Z"
