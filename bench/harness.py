"""What every bench shares: the fair reference loop, interleaved A/B timing, the stats table, an
overall time limit, and a real `trainboard serve` on a free port with a temporary data dir.

The reference loop is the best plain PyTorch loop we know how to write on this machine: the data
set pre-loaded as tensors, one permutation per epoch and then contiguous slices of the permuted
tensors, `Adam(fused=True)` where this torch build supports it on the device, and
`zero_grad(set_to_none=True)`. The engine is compared with nothing weaker.

Timing pairs run A B A B ... in one invocation with the same torch thread count on both sides, and
report min and median of each side and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The real MNIST files, found as the tests find them (TRAINBOARD_SHARED_DATA overrides).
SHARED_DATA = Path(os.environ.get("TRAINBOARD_SHARED_DATA", ROOT.parent / "shared" / "data"))
MNIST_DIR = SHARED_DATA / "mnist"

# The tutorial's MNIST MLP (Flatten, Dense 128 relu, Dense 10 softmax).
MNIST_MLP = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


# --- command line -------------------------------------------------------------------------
def parser(doc: str, *, timeout: float, pairs: bool = True) -> argparse.ArgumentParser:
    """The options every bench takes: --threads, --timeout and (for timing pairs) --pairs."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], epilog=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default 1)")
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"overall time limit in seconds (default {timeout:g}); on expiry print what is "
                        "measured, stop what was started and exit 124")
    if pairs:
        p.add_argument("--pairs", type=int, default=3, help="A/B timing pairs, interleaved (default 3)")
    return p


def machine() -> str:
    """'AMD EPYC, 2 cores, no GPU' (from /proc/cpuinfo and torch when it is imported)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return f"{model}, {os.cpu_count()} cores, {gpu}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def header(title: str, threads: int) -> None:
    print(f"== {title}", flush=True)
    print(f"   machine: {machine()}; torch threads per side: {threads}; {load()} (before)", flush=True)


# --- the time limit -----------------------------------------------------------------------
class Watchdog:
    """An overall time limit: on expiry, print the partial results, kill every registered process
    by pid (children first) and exit 124."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.pids: list[int] = []
        self.report: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def track(self, pid: int) -> None:
        with self._lock:
            self.pids.append(pid)

    def untrack(self, pid: int) -> None:
        with self._lock:
            if pid in self.pids:
                self.pids.remove(pid)

    def _expire(self) -> None:
        print(f"\n!! time limit of {self.seconds:g} s reached: partial results follow", flush=True)
        try:
            if self.report is not None:
                self.report()
        finally:
            with self._lock:
                pids = list(self.pids)
            for pid in pids:
                kill_tree(pid)
            sys.stdout.flush()
            os._exit(124)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (trainers run in their own process groups)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.Error:
        return
    for process in [*children, parent]:
        try:
            process.kill()
        except psutil.Error:
            pass


# --- timing pairs -------------------------------------------------------------------------
@dataclass
class Side:
    name: str
    times: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def interleave(pairs: int, a: Side, measure_a: Callable[[], float], b: Side,
               measure_b: Callable[[], float]) -> None:
    """Run A B A B ... `pairs` times; each callable returns the seconds it measured."""
    for index in range(pairs):
        for side, measure in ((a, measure_a), (b, measure_b)):
            seconds = measure()
            side.times.append(seconds)
            print(f"   pair {index + 1}/{pairs}: {side.name:<36} {seconds:8.3f} s", flush=True)


def table(a: Side, b: Side, *, what: str = "seconds") -> str:
    """Min and median of each side, and the ratio of medians (a / b)."""
    lines = [f"   {'':<36} {'runs':>5} {'min':>9} {'median':>9}   ({what})"]
    for side in (a, b):
        if side.times:
            lines.append(f"   {side.name:<36} {len(side.times):>5} {min(side.times):>9.3f} "
                         f"{statistics.median(side.times):>9.3f}")
        else:
            lines.append(f"   {side.name:<36} {0:>5} {'–':>9} {'–':>9}")
    if a.times and b.times:
        lines.append(f"   ratio of medians {a.name} / {b.name}: "
                     f"{statistics.median(a.times) / statistics.median(b.times):.3f}")
    return "\n".join(lines)


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return f"n {len(values)}, min {min(values):.3f} s, median {statistics.median(values):.3f} s, max {max(values):.3f} s"


# --- the reference loop -------------------------------------------------------------------
@dataclass
class MnistTensors:
    """The data set pre-loaded once: float pixels in [0, 1] (the tutorial's `x / 255.0`)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


def mnist_tensors(data) -> MnistTensors:
    import torch

    return MnistTensors(x_train=torch.from_numpy(data.x_train).float().div_(255),
                        y_train=torch.from_numpy(data.y_train).long(),
                        x_test=torch.from_numpy(data.x_test).float().div_(255),
                        y_test=torch.from_numpy(data.y_test).long())


def best_adam(params, lr: float, device: str = "cpu"):
    """`Adam(fused=True)` where this torch build has the fused kernel for the device, else foreach."""
    import torch

    try:
        return torch.optim.Adam(params, lr=lr, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True), "foreach"


def reference_loop(tensors: MnistTensors, epochs: int, *, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0) -> tuple[float, float, str]:
    """(test accuracy, training seconds, optimizer kind): the plain loop the engine is compared with."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer, kind = best_adam(model.parameters(), lr)
    x_train, y_train, n = tensors.x_train, tensors.y_train, len(tensors.y_train)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        xs, ys = x_train[perm], y_train[perm]  # one gather per epoch, then contiguous slices
        for i in range(0, n, batch_size):
            loss = F.cross_entropy(model(xs[i:i + batch_size]), ys[i:i + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        accuracy = (model(tensors.x_test).argmax(1) == tensors.y_test).float().mean().item()
    return accuracy, elapsed, kind


def engine_train(data, epochs: int, workdir: Path, *, seed: int = 0, val_split: float = 0.0,
                 batch_size: int = 32) -> tuple[float, float, float]:
    """(test accuracy, training-loop seconds, whole train() seconds) for the engine on the MNIST MLP.

    Training-loop seconds are the sum of the `epoch` events' `epoch_time` (app/runs/figures.py's
    training time); the whole call adds data to device, warm-up, checkpoints, evaluation, exports.
    """
    from app.engine.loop import train
    from app.engine.types import ListSink, TrainConfig, TrainJob

    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device="cpu", val_split=val_split)
    job = TrainJob(spec=MNIST_MLP, config=config, checkpoint_dir=workdir / "ckpt", artifacts_dir=workdir / "export")
    sink = ListSink()
    start = time.perf_counter()
    result = train(job, data, sink)
    whole = time.perf_counter() - start
    return result.test_accuracy, sum(e["epoch_time"] for e in sink.of("epoch")), whole


# --- a real server ------------------------------------------------------------------------
def post_until_first_metric(client, body: dict) -> tuple[int, float, float]:
    """POST a run and poll its rows every 10 ms (as a watching browser would) until the first
    step/epoch row: (run id, when it was posted, seconds to that row) on time.perf_counter."""
    posted = time.perf_counter()
    response = client.post("/api/runs", json=body)
    response.raise_for_status()
    run_id = response.json()["id"]
    seen = 0
    while True:
        rows = client.get(f"/api/runs/{run_id}/metrics", params={"after": seen}).json()
        seen = rows[-1]["seq"] if rows else seen
        if any(r["kind"] in ("step", "epoch") for r in rows):
            return run_id, posted, time.perf_counter() - posted
        if any(r["kind"] == "status" and r["payload"]["status"] in ("failed", "cancelled") for r in rows):
            raise SystemExit(f"run {run_id} did not train: {rows[-1]['payload']}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`trainboard serve` in its own process, on a free port, with a data dir of its own.

    `start()` returns the seconds from spawning the process to the first 200 from /healthz.
    """

    def __init__(self, data_dir: Path | None = None, env: dict[str, str] | None = None,
                 watchdog: Watchdog | None = None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="trainboard-bench-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), **(env or {})}
        if "TRAINBOARD_DATABASE_URL" not in (env or {}):
            self.env.pop("TRAINBOARD_DATABASE_URL", None)
        self.watchdog = watchdog
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> float:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            spawned = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if self.watchdog is not None:
            self.watchdog.track(self.process.pid)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return time.perf_counter() - spawned
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"server did not answer in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def ready_standbys(self) -> int:
        """How many trainer processes have finished warming up (their logs say "ready")."""
        logs = self.data_dir / "logs"
        if not logs.is_dir():
            return 0
        return sum(1 for path in logs.glob("standby-*.log") if "ready" in path.read_text(errors="replace"))

    def wait_standby(self, count: int, timeout: float = 120.0) -> None:
        """Wait until `count` trainers have warmed up (the runs posted so far + one standing by)."""
        deadline = time.monotonic() + timeout
        while self.ready_standbys() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no warm trainer after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        pid = self.process.pid
        import psutil

        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for child in children:  # trainers and standbys live in their own process groups
            try:
                child.kill()
            except psutil.Error:
                pass
        if self.watchdog is not None:
            self.watchdog.untrack(pid)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def import_mnist(data_dir: Path, mnist: Path = MNIST_DIR) -> None:
    """Import the real MNIST idx files into a data dir (as `trainboard data import` does). Not at `mnist`:
    the tests' download cache, filled once by `trainboard data download`'s code when empty."""
    from app.datasets import download, registry

    if not mnist.is_dir():
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainboard" / "mnist"
        try:
            mnist = download.fetch_files("mnist", cache)
        except download.DownloadFailed as exc:
            raise SystemExit(f"the real MNIST files are not at {mnist} and could not be downloaded: {exc.message} "
                             "(pass --mnist or set TRAINBOARD_SHARED_DATA)") from exc
    registry.import_idx("mnist", mnist, data_dir)


def raise_fd_limit(want: int = 8192) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want)), hard))
