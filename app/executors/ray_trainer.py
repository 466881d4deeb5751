"""The trainer as a Ray actor: what app/executors/ray.py starts on the cluster, one per run.

A plain class (the launcher wraps it with `ray.remote`), so importing it needs no Ray. It shares
nothing with the server but the ingest API: the run's order, data set and resume checkpoint come
over HTTP and its metrics, checkpoints and exports go back the same way (app/worker.py with an
HttpRunStore). Its methods run in threads of one actor process:

- `ready()` warms it up (torch, the engine, the first optimizer) — a standby does this before it
  is handed a run, so the run's first metric is not held up by imports;
- `train(order)` trains the run in this process; `wait()` returns when that is over (how a server
  that restarted watches a run it adopted); `cancel()` asks the run to stop at its next step.

An actor is used for one run only: the launcher kills it once `train` has returned, and if nobody
does (the server went away) it exits by itself shortly after, so it never holds cluster resources
for nothing.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

# After its run, an actor that nobody killed exits by itself after this many seconds.
EXIT_AFTER_RUN_S = 30.0
# A standby checks its server this often, and exits after this many failed checks in a row.
OWNER_CHECK_S, OWNER_FAILURES = 5.0, 3


class RayTrainer:
    def __init__(self) -> None:
        from app.worker import StopFlag

        self.stop = StopFlag()
        self.done = threading.Event()
        self.order_run_id: int | None = None
        self.watching = False

    def ready(self, server_url: str | None = None) -> int:
        """Warm up; with `server_url` (a standby), also exit if that server stops answering before
        it hands this actor a run (a server that crashed cannot kill its standby)."""
        import torch

        import app.datasets.registry  # noqa: F401
        import app.engine.export  # noqa: F401
        import app.engine.loop  # noqa: F401
        from app.runs.http_store import HttpRunStore  # noqa: F401

        # The first optimizer constructed imports torch._dynamo (~2.5 s): pay it before the run.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        if server_url and not self.watching:
            self.watching = True
            threading.Thread(target=self._watch_owner, args=(server_url,), daemon=True).start()
        return os.getpid()

    def _watch_owner(self, server_url: str) -> None:
        import httpx

        failures = 0
        while self.order_run_id is None:
            if self.done.wait(OWNER_CHECK_S):
                return
            if self.order_run_id is not None:
                return
            try:
                failures = 0 if httpx.get(f"{server_url}/healthz", timeout=3).status_code == 200 else failures + 1
            except httpx.HTTPError:
                failures += 1
            if failures >= OWNER_FAILURES:
                os._exit(0)  # an idle standby whose server is gone: give its resources back

    def train(self, order: dict[str, Any]) -> int:
        import torch

        from app.runs.http_store import HttpRunStore
        from app.worker import train_run

        self.order_run_id = int(order["run_id"])
        try:
            self.ready()
            if order.get("threads"):
                torch.set_num_threads(int(order["threads"]))
            store = HttpRunStore(order["server_url"], int(order["run_id"]), order["token"], pid=os.getpid())
            return train_run(int(order["run_id"]), store, stop=self.stop)
        finally:
            self.done.set()
            threading.Thread(target=_exit_later, daemon=True).start()

    def wait(self) -> bool:
        self.done.wait()
        return True

    def cancel(self) -> None:
        self.stop.set()

    def run_id(self) -> int | None:
        """The run it was handed (None for a standby): how a restarted server finds its runs."""
        return self.order_run_id


def _exit_later() -> None:
    time.sleep(EXIT_AFTER_RUN_S)
    os._exit(0)
