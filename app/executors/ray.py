"""The Ray launcher: each run is a Ray actor on the cluster (TRAINBOARD_EXECUTOR=ray).

The scheduler (app/executors/scheduler.py) stays in the web process and owns every status
change; this launcher only starts trainers on the cluster and answers questions about them.

- The web process connects to the cluster as a Ray driver (TRAINBOARD_RAY_ADDRESS: `auto`, a
  head's `HOST:6379` when it runs on a node of the cluster, or `ray://HOST:10001` through Ray
  Client). Only this module imports Ray, and only when the Ray executor is chosen.
- A run becomes one actor (app/executors/ray_trainer.py) with `num_cpus` = the run's threads
  (TRAINBOARD_TRAINER_THREADS, default 1) and `num_gpus` = 1 for device `cuda`, or for `auto` when
  the cluster has GPUs. The slot count is the cluster's capacity in such runs, read from Ray.
- Trainers on the cluster share no disk or database with the server: they report over the ingest
  API with their run's token and fetch their data set and resume checkpoint from it.
- Starting is prompt: one standby actor (CPU shape) is kept warm, torch imported, and handed the
  next CPU run; a Ray job would cost seconds of driver start-up per run (docs/benchmarks.md).
- Cancel: the actor's `cancel()` (and the cancel flag in every ingest answer) stops the run at its
  next step; after the grace period the actor is killed (`ray.kill`).
- An actor that dies (its worker process killed, its node lost) fails its run with "Ray worker
  lost: …" at once when Ray reports it, and at the latest when its heartbeats have stopped for
  TRAINBOARD_HEARTBEAT_TIMEOUT_S; the scheduler retries the run if its settings ask for retries.
- Actors are detached and named in a namespace of this server, so a restarted server adopts the
  runs still training; standbys left by a previous server are removed when it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from app.core.config import Settings
from app.executors.base import Assignment, Handle, Resources, RunRef
from app.executors.ray_trainer import RayTrainer

PREFIX = "trainboard-trainer-"
RESOURCES_EVERY_S = 2.0
# A standby that failed to warm up is not replaced sooner than this.
STANDBY_RETRY_S = 5.0


class RayUnavailable(RuntimeError):
    """The cluster cannot be reached (or Ray is not installed)."""


@dataclass
class RayHandle(Handle):
    actor: Any = None
    ref: Any = None  # train() (or wait(), for an adopted run): ready when the trainer is done
    outcome: str | None = None  # why it ended, read once it is done


def namespace(settings: Settings) -> str:
    """The Ray namespace of this server's actors: one per server (by the URL its trainers report to)."""
    return "trainboard-" + hashlib.sha256(settings.ingest_url.encode()).hexdigest()[:12]


def first_lines(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:limit]


# Connecting through Ray Client: attempts when the head's proxy fails to start the client's server.
CLIENT_INIT_ATTEMPTS = 3
CLIENT_RETRY_DELAY_S = 2.0


def _check_reachable(address: str) -> None:
    """A head at HOST:PORT that does not answer: say so now (ray.init would retry for minutes)."""
    if address == "auto" or "://" in address or ":" not in address:
        return  # Ray Client has its own connection timeout; "auto" reads this machine's cluster file
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to the Ray cluster at TRAINBOARD_RAY_ADDRESS={address}: "
                             f"nothing answers there ({exc})") from exc


class RayLauncher:
    remote = True  # trainers report over the ingest API

    def __init__(self, settings: Settings):
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable("TRAINBOARD_EXECUTOR=ray needs the Ray extra: pip install 'trainboard[ray]'") from exc
        self.ray = ray
        self.settings = settings
        self.owner = f"ray:{settings.ray_address}"
        self.namespace = namespace(settings)
        self.threads = settings.trainer_threads or 1
        _check_reachable(settings.ray_address)
        # ray.init replaces the SIGTERM handler with one that exits at once: the web server's own
        # (a graceful shutdown that stops the scheduler and the standby) must stay.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._connect()
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: say where it looked
            raise RayUnavailable(f"cannot connect to the Ray cluster at TRAINBOARD_RAY_ADDRESS="
                                 f"{settings.ray_address}: {first_lines(exc)}") from exc
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    if handler is not None:
                        signal.signal(sig, handler)
        self.actor_class = ray.remote(RayTrainer)
        self.standby: RayHandle | None = None
        self.live: dict[int, RayHandle] = {}  # runs whose actor has not ended yet
        self._resources: Resources | None = None
        self._resources_at = 0.0
        self._has_gpu = False
        self._standby_retry_at = 0.0
        self._remove_old_standbys()

    def _connect(self) -> None:
        for attempt in range(1, CLIENT_INIT_ATTEMPTS + 1):
            try:
                self.ray.init(address=self.settings.ray_address, namespace=self.namespace, logging_level="ERROR",
                              log_to_driver=False, ignore_reinit_error=True, configure_logging=False)
                return
            except ConnectionAbortedError as exc:
                # Ray Client: the head's proxy could not start this client's own server process ("Initialization
                # failure from server", seen on a loaded head); a new connection gets a new one.
                if attempt == CLIENT_INIT_ATTEMPTS or "Initialization failure" not in str(exc):
                    raise
                print(f"trainboard: the Ray client server did not start ({first_lines(exc)}): trying again "
                      f"({attempt + 1}/{CLIENT_INIT_ATTEMPTS})", file=sys.stderr, flush=True)
                with contextlib.suppress(Exception):
                    self.ray.shutdown()
                time.sleep(CLIENT_RETRY_DELAY_S)

    # -- what it offers ----------------------------------------------------------------------
    def resources(self) -> Resources:
        now = time.monotonic()
        if self._resources is None or now - self._resources_at > RESOURCES_EVERY_S:
            total = self.ray.cluster_resources()
            cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
            self._has_gpu = gpus >= 1
            self._resources = Resources(cpu_threads=int(cpus), slots=int(cpus // self.threads),
                                        threads_per_run=self.threads)
            self._resources_at = now
        return self._resources

    # -- actors ------------------------------------------------------------------------------
    def _new_actor(self, num_gpus: int) -> Any:
        return self.actor_class.options(
            name=PREFIX + secrets.token_hex(6), lifetime="detached", max_concurrency=4, max_restarts=0,
            num_cpus=self.threads, num_gpus=num_gpus).remote()

    def _trainer_actors(self) -> list[tuple[Any, int | None]]:
        """This namespace's trainer actors that answer, with the run each holds (None: a standby)."""
        found = []
        for entry in self.ray.util.list_named_actors(all_namespaces=False):
            name = entry if isinstance(entry, str) else entry.get("name", "")
            if name.startswith(PREFIX):
                with contextlib.suppress(Exception):
                    actor = self.ray.get_actor(name)
                    found.append((actor, self.ray.get(actor.run_id.remote(), timeout=5)))
        return found

    def _remove_old_standbys(self) -> None:
        """Kill the standbys an earlier server of this namespace left (they hold no run)."""
        try:
            for actor, run_id in self._trainer_actors():
                if run_id is None:
                    with contextlib.suppress(Exception):
                        self.ray.kill(actor, no_restart=True)
        except Exception as exc:
            print(f"trainboard: cannot list the Ray actors: {exc}", file=sys.stderr, flush=True)

    def prepare(self, wanted: bool = True) -> None:
        if not self.settings.warm_workers:
            return
        now = time.monotonic()
        if self.standby is not None and self._standby_failed(self.standby):
            self._kill(self.standby)
            self.standby = None
            self._standby_retry_at = now + STANDBY_RETRY_S
        if (self.standby is None and wanted and now >= self._standby_retry_at
                and len(self.live) + 1 <= self.resources().slots):
            actor = self._new_actor(0)
            # It watches this server and exits if it goes away before handing it a run.
            self.standby = RayHandle(run_id=0, pid=None, actor=actor, ref=actor.ready.remote(self.settings.ingest_url))

    def _standby_failed(self, standby: RayHandle) -> bool:
        """Whether the standby died while warming up (e.g. a broken install on its node)."""
        if standby.outcome == "ready":
            return False
        ready, _ = self.ray.wait([standby.ref], timeout=0)
        if not ready:
            return False
        try:
            self.ray.get(standby.ref, timeout=5)
        except Exception as exc:
            print(f"trainboard: a standby trainer on the Ray cluster failed: {first_lines(exc)}",
                  file=sys.stderr, flush=True)
            return True
        standby.outcome = "ready"
        return False

    def _kill(self, handle: RayHandle) -> None:
        if handle.run_id and self.live.get(handle.run_id) is handle:
            del self.live[handle.run_id]
        with contextlib.suppress(Exception):
            self.ray.kill(handle.actor, no_restart=True)

    def close(self) -> None:
        standby, self.standby = self.standby, None
        if standby is not None:
            self._kill(standby)
        with contextlib.suppress(Exception):
            self.ray.shutdown()  # detached actors keep training; a restarted server adopts them

    # -- trainers ----------------------------------------------------------------------------
    def _num_gpus(self, device: str) -> int:
        self.resources()
        if device.startswith("cuda"):
            return 1
        return 1 if device == "auto" and self._has_gpu else 0

    def launch(self, run_id: int, assignment: Assignment) -> RayHandle:
        num_gpus = self._num_gpus(assignment.device)
        if num_gpus and not self._has_gpu:
            # An actor asking for a GPU would wait for one forever (until the start timeout).
            raise OSError(f"the run asks for device {assignment.device} and the Ray cluster has no GPU "
                          "now: use device auto or cpu, or add a GPU node")
        standby, self.standby = self.standby, None
        if standby is not None and (num_gpus or self._standby_failed(standby)):
            self._kill(standby)  # a GPU run needs another shape: free the standby's CPUs for it
            standby = None
        actor = standby.actor if standby is not None else self._new_actor(num_gpus)
        order = {"run_id": run_id, "threads": assignment.threads, "server_url": self.settings.ingest_url,
                 "token": assignment.ingest_token}
        handle = RayHandle(run_id=run_id, pid=None, actor=actor, ref=actor.train.remote(order))
        self.live[run_id] = handle
        return handle

    def _done(self, handle: RayHandle) -> bool:
        if handle.outcome is not None:
            return True
        ready, _ = self.ray.wait([handle.ref], timeout=0)
        if not ready:
            return False
        try:
            self.ray.get(handle.ref, timeout=5)
            handle.outcome = "the trainer ended without reporting its result"
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.NodeDiedError, self.ray.exceptions.ObjectLostError) as exc:
            handle.outcome = f"Ray worker lost: {first_lines(exc)}"
        except self.ray.exceptions.RayTaskError as exc:
            handle.outcome = f"the trainer failed on the cluster: {first_lines(exc.cause if exc.cause else exc)}"
        except Exception as exc:
            handle.outcome = f"Ray worker lost: {type(exc).__name__}: {first_lines(exc)}"
        self._kill(handle)  # one actor per run: its process goes with it
        return True

    def alive(self, handle: Handle) -> bool:
        return not self._done(handle)  # type: ignore[arg-type]

    def signal(self, handle: Handle, what: Literal["cancel", "kill"]) -> None:
        actor = getattr(handle, "actor", None)
        if actor is None:
            return
        if what == "cancel":
            with contextlib.suppress(Exception):
                actor.cancel.remote()
        else:
            self._kill(handle)  # type: ignore[arg-type]

    def exit_reason(self, handle: Handle) -> str:
        self._done(handle)  # type: ignore[arg-type]
        return getattr(handle, "outcome", None) or "the trainer ended"

    def adopt(self, run: RunRef) -> RayHandle | None:
        """A run still training on the cluster after a server restart: its actor, found by run id."""
        if run.worker != self.owner:
            return None
        for handle in list(self.live.values()):
            if handle.run_id == run.id:
                return handle
        try:
            actors = self._trainer_actors()
        except Exception as exc:
            print(f"trainboard: cannot list the Ray actors: {exc}", file=sys.stderr, flush=True)
            return None
        for actor, run_id in actors:
            if run_id == run.id:
                handle = RayHandle(run_id=run.id, pid=run.pid, adopted=True, actor=actor, ref=actor.wait.remote())
                self.live[run.id] = handle
                return handle
        return None
