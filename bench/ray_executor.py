"""The seed MNIST MLP on the local executor vs the Ray executor, interleaved: POST /api/runs → first
metric row and POST → completed, plus one cold start of each; then ingest throughput (bench/ingest.py).

Starts one Ray head on loopback (`ray start --head --block` under setsid, every port chosen, its own
temp dir under /tmp, --num-cpus = 2 x --threads so a run and the warm standby actor both fit) and two
`trainboard serve` processes, each on a temporary data dir with the real MNIST files imported and
`TRAINBOARD_TRAINER_THREADS` = --threads: "local" (the default executor, one slot) and "Ray"
(`TRAINBOARD_EXECUTOR=ray` on that head: each run is a Ray actor with num_cpus = --threads that
fetches the data set over the ingest API into the node cache, reports its metrics over HTTP and
uploads its checkpoints and exports).

Cold start: each server's first run, posted as soon as the server answers /healthz (its standby is
still warming up; for Ray the data set is not yet in the node cache). The local server is started,
cold-run and settled before the Ray server is started, so the two never overlap.

Then A B A B … for --pairs pairs, each side posting the MLP (--epochs, batch 32, Adam 1e-3, seed 0,
val_split 0: the body of bench/api_seed_mnist.py) and timing POST → first step/epoch row (polled
every 10 ms) and POST → completed (polled every 50 ms). Before every measurement both servers are
settled, so no measurement shares the CPU with a warm-up:
- local: its next standby trainer has logged "ready" (as bench/api_seed_mnist.py waits);
- Ray: exactly one trainer actor is alive on the head (the previous run's actor is gone), it holds
  no run (the standby), and its `ready()` answers when this bench calls it (Ray runs the call in a
  second thread of the actor; it returns once the actor's own warm-up imports are done). This bench
  process is a Ray driver for that check only; it is idle while measuring;
- both: the head's processes (GCS, raylet, workers) used under 5% of a core over the last second,
  so nothing Ray does after an actor is killed (refilling its idle worker pool) overlaps a run.

Finally (unless --no-ingest) bench/ingest.py runs as a subprocess after everything above has been
stopped, with the same --pairs and --threads, for rows/s over HTTP vs direct database writes.

    .venv/bin/python bench/ray_executor.py [--epochs 5] [--pairs 3] [--threads 1] [--timeout 900]
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

RAY = Path(sys.executable).with_name("ray")
# Ray takes the machine's own address for its node unless it believes it is a local-only cluster.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
TRAINER_PREFIX = "trainboard-trainer-"  # app/executors/ray.py's actor names
TERMINAL = ("completed", "failed", "cancelled")


class RayHead:
    """One Ray head on loopback in its own session; stopped by process group, then by pid."""

    def __init__(self, cpus: int, watchdog: harness.Watchdog, *, dashboard: bool = False):
        self.cpus = cpus
        # With the dashboard, the head runs Ray's job server at dashboard_url (bench/ray_start_paths.py).
        self.dashboard_port = harness.free_port() if dashboard else None
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}" if dashboard else None
        self.watchdog = watchdog
        # Ray's socket paths must stay short: a temp dir of its own directly under /tmp.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="tbrb-", dir="/tmp"))
        self.node_cache = self.temp_dir / "node-cache"
        self.port = harness.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = None
        self._started: list = []

    def start(self, timeout: float = 90.0) -> float:
        ports = {flag: harness.free_port() for flag in (
            "--ray-client-server-port", "--node-manager-port", "--object-manager-port",
            "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port",
            "--runtime-env-agent-port")}
        log_path = self.temp_dir / "head.log"
        self._log = open(log_path, "wb")
        spawned = time.perf_counter()
        self.process = subprocess.Popen(
            [str(RAY), "start", "--head", "--block", f"--num-cpus={self.cpus}", "--num-gpus=0",
             "--node-ip-address=127.0.0.1", f"--port={self.port}",
             *(["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
               if self.dashboard_port else ["--include-dashboard=false"]),
             "--disable-usage-stats", f"--temp-dir={self.temp_dir / 'ray'}", "--object-store-memory=200000000",
             *(f"{flag}={value}" for flag, value in ports.items())],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **LOOPBACK_ENV, "TRAINBOARD_NODE_CACHE": str(self.node_cache)})
        self.watchdog.track(self.process.pid)
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return time.perf_counter() - spawned

    def wait_quiet(self, timeout: float = 60.0, window: float = 1.0, busy: float = 0.05) -> float:
        """Until the head's processes (GCS, raylet, prestarted idle workers importing Ray) used less
        than `busy` CPU seconds over `window` seconds; returns the seconds waited."""
        import psutil

        def cpu() -> float:
            total = 0.0
            for process in self.processes():
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            return total

        start = time.monotonic()
        before = cpu()
        while time.monotonic() - start < timeout:
            time.sleep(window)
            now = cpu()
            if now - before < busy:
                return time.monotonic() - start
            before = now
        raise RuntimeError(f"the Ray head did not go quiet in {timeout:g} s")

    def processes(self) -> list:
        """The head's processes: its process group and every descendant (workers start groups of their own)."""
        import psutil

        if self.process is None:
            return []
        found = {}
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(process.pid) == self.process.pid:
                    found[process.pid] = process
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.process.pid).children(recursive=True):
                found[process.pid] = process
        return list(found.values())

    def stop(self) -> None:
        import psutil

        if self.process is not None:
            started = self.processes()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # whatever of the group did not stop by itself
            for leftover in started:
                with contextlib.suppress(psutil.Error):
                    leftover.kill()  # psutil checks it is still the process it was (pid and start time)
            self.process.wait()
            self.watchdog.untrack(self.process.pid)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class RayProbe:
    """A Ray driver in this process, used only between measurements: is the Ray server's standby
    actor the only trainer actor left, and warm?"""

    def __init__(self, address: str):
        import ray  # LOOPBACK_ENV is in os.environ before Ray is first imported (main)

        self.ray = ray
        ray.init(address=address, namespace="trainboard-bench-probe", logging_level="ERROR",
                 log_to_driver=False, configure_logging=False)

    def trainers(self) -> list[dict]:
        return [entry for entry in self.ray.util.list_named_actors(all_namespaces=True)
                if entry["name"].startswith(TRAINER_PREFIX)]

    def wait_settled(self, timeout: float = 180.0) -> None:
        """Until one trainer actor is alive, it holds no run, and its ready() has returned."""
        deadline = time.monotonic() + timeout
        last = "no trainer actor"
        while time.monotonic() < deadline:
            trainers = self.trainers()
            if len(trainers) == 1:
                entry = trainers[0]
                try:
                    actor = self.ray.get_actor(entry["name"], namespace=entry["namespace"])
                    if self.ray.get(actor.run_id.remote(), timeout=10) is None:
                        self.ray.get(actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                        return
                    last = "the only trainer actor holds a run"
                except Exception as exc:  # killed between listing and asking: look again
                    last = f"{type(exc).__name__}: {exc}"
            else:
                last = f"{len(trainers)} trainer actors alive"
            time.sleep(0.1)
        raise RuntimeError(f"the Ray standby did not settle in {timeout:g} s ({last})")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.shutdown()


def measure(client, body: dict) -> dict:
    """POST the run; seconds to its first step/epoch row and to `completed`, and what it reported."""
    run_id, posted, first_at = harness.post_until_first_metric(client, body)
    while True:
        state = client.get(f"/api/runs/{run_id}").json()
        if state["status"] in TERMINAL:
            break
        time.sleep(0.05)
    completed_at = time.perf_counter() - posted
    if state["status"] != "completed":
        raise SystemExit(f"run {run_id} {state['status']}: {state['failure_reason']}")
    training, seen = 0.0, 0
    while rows := client.get(f"/api/runs/{run_id}/metrics", params={"after": seen, "limit": 10000}).json():
        training += sum(r["payload"]["epoch_time"] for r in rows if r["kind"] == "epoch")
        seen = rows[-1]["seq"]
    return {"first": first_at, "completed": completed_at, "training": training,
            "accuracy": state["test_accuracy"], "worker": state.get("worker")}


def main() -> int:
    p = harness.parser(__doc__, timeout=900)
    p.add_argument("--mnist", type=Path, default=harness.MNIST_DIR)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--no-ingest", action="store_true", help="skip bench/ingest.py at the end")
    args = p.parse_args()

    os.environ.update(LOOPBACK_ENV)  # read when Ray is imported: this process is a driver on loopback
    import httpx
    import ray
    import torch

    harness.header(f"local vs Ray executor: MNIST MLP, {args.epochs} epochs, batch 32, POST → first metric "
                   f"and POST → completed", args.threads)
    print(f"   Python {platform.python_version()}, torch {torch.__version__}, Ray {ray.__version__}; "
          f"Ray head on loopback with {2 * args.threads} CPUs; both servers and the head run side by side "
          f"on this machine for every measurement", flush=True)

    sides = {(executor, what): harness.Side(f"{executor}: POST → {what}")
             for executor in ("local", "Ray") for what in ("first metric", "completed")}
    training = {"local": [], "Ray": []}
    overhead = {"local": [], "Ray": []}
    accuracies = {"local": [], "Ray": []}
    cold: dict[str, dict] = {}
    started = time.monotonic()

    def report() -> None:
        print("   -- cold start (each server's first run, posted at its first /healthz 200)")
        for executor, result in cold.items():
            print(f"   {executor + ':':<7} POST → first metric {result['first']:7.3f} s, "
                  f"POST → completed {result['completed']:7.3f} s (training loop {result['training']:.3f} s)")
        for what in ("first metric", "completed"):
            print(f"   -- POST → {what}, warm standby, ratio Ray / local")
            print(harness.table(sides[("Ray", what)], sides[("local", what)]))
        for executor in ("local", "Ray"):
            if training[executor]:
                print(f"   {executor}: training loop (epoch_time sum) {harness.summary(training[executor])}")
                print(f"   {executor}: POST → completed minus training loop {harness.summary(overhead[executor])}")
        for executor, values in accuracies.items():
            if values:
                print(f"   test accuracy {executor}: {', '.join(f'{v:.4f}' for v in values)}")
        print(f"   {harness.load()} (after)", flush=True)

    with harness.Watchdog(args.timeout) as watchdog:
        head = RayHead(2 * args.threads, watchdog)
        base_env = {"TRAINBOARD_TRAINER_THREADS": str(args.threads)}
        local = harness.Server(env={**base_env, "TRAINBOARD_SLOTS": "1"}, watchdog=watchdog)
        on_ray = harness.Server(env={**base_env, **LOOPBACK_ENV, "TRAINBOARD_EXECUTOR": "ray",
                                     "TRAINBOARD_RAY_ADDRESS": head.address}, watchdog=watchdog)
        probe: RayProbe | None = None
        clients: list = []

        def expire() -> None:
            report()
            head.stop()  # the servers are killed by pid after this

        watchdog.report = expire
        body = {"preset": "mnist-mlp", "dataset": "mnist",
                "config": {"epochs": args.epochs, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001},
                           "seed": 0, "val_split": 0.0}}
        try:
            for server in (local, on_ray):
                harness.import_mnist(server.data_dir, args.mnist)
            print(f"   Ray head started in {head.start():.1f} s at {head.address}", flush=True)
            probe = RayProbe(head.address)
            print(f"   Ray head quiet (< 5% of a core over 1 s) after {head.wait_quiet():.1f} s more", flush=True)
            posted_local = [0]

            def settle() -> None:
                local.wait_standby(posted_local[0] + 1)
                if on_ray.process is not None:
                    probe.wait_settled()
                head.wait_quiet()  # e.g. Ray refilling its idle worker pool after the last actor was killed

            def record(executor: str, result: dict) -> None:
                training[executor].append(result["training"])
                overhead[executor].append(result["completed"] - result["training"])
                accuracies[executor].append(result["accuracy"])

            # Cold starts: the local server first, settled before the Ray server starts.
            local.start()
            local_api = httpx.Client(base_url=local.url, timeout=30)
            clients.append(local_api)
            cold["local"] = measure(local_api, body)
            posted_local[0] += 1
            print(f"   cold local: first metric {cold['local']['first']:.3f} s, completed "
                  f"{cold['local']['completed']:.3f} s", flush=True)
            settle()
            on_ray.start()
            ray_api = httpx.Client(base_url=on_ray.url, timeout=30)
            clients.append(ray_api)
            cold["Ray"] = measure(ray_api, body)
            print(f"   cold Ray:   first metric {cold['Ray']['first']:.3f} s, completed "
                  f"{cold['Ray']['completed']:.3f} s (worker {cold['Ray']['worker']})", flush=True)

            def run(executor: str, api, count_local: bool):
                def measure_side() -> float:
                    settle()
                    result = measure(api, body)
                    if count_local:
                        posted_local[0] += 1
                    record(executor, result)
                    sides[(executor, "first metric")].times.append(result["first"])
                    print(f"            {executor:<5} first metric {result['first']:8.3f} s", flush=True)
                    return result["completed"]
                return measure_side

            completed_local, completed_ray = sides[("local", "completed")], sides[("Ray", "completed")]
            harness.interleave(args.pairs, completed_local, run("local", local_api, True),
                               completed_ray, run("Ray", ray_api, False))
        finally:
            for client in clients:
                client.close()
            local.close()
            on_ray.close()  # its standby actor goes with it
            if probe is not None:
                probe.close()
            head.stop()
        report()
        print(f"   local vs Ray took {time.monotonic() - started:.0f} s", flush=True)

        if not args.no_ingest:
            left = args.timeout - (time.monotonic() - started) - 5
            if left < 30:
                print("   !! too little time left for bench/ingest.py", flush=True)
                return 124
            print("", flush=True)
            ingest = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("ingest.py")), "--pairs", str(args.pairs),
                 "--threads", str(args.threads), "--timeout", f"{left:.0f}"], cwd=harness.ROOT)
            watchdog.track(ingest.pid)
            code = ingest.wait()
            watchdog.untrack(ingest.pid)
            if code:
                return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
