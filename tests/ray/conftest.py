"""A real Ray head on loopback, one per test session, for the Ray executor's tests.

`ray start --head --block` runs under setsid; at the end its process group is stopped by id
(SIGTERM, then SIGKILL for what is left). Every address is pinned to 127.0.0.1, and the fixture
checks that nothing of the head listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port

RAY = Path(sys.executable).with_name("ray")
# Ray takes the machine's own address for its node unless it believes it is a local-only cluster.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class RayHead:
    address: str
    pgid: int
    node_cache: Path
    client_address: str  # ray://127.0.0.1:PORT: Ray Client, how a web process off the cluster connects

    def server_env(self, **extra: str) -> dict[str, str]:
        """The environment of a Trainboard server on this cluster."""
        return {**LOOPBACK_ENV, "TRAINBOARD_EXECUTOR": "ray", "TRAINBOARD_RAY_ADDRESS": self.address, **extra}

    def processes(self) -> list[psutil.Process]:
        """The head's processes: its process group and every descendant (Ray's workers start
        process groups of their own)."""
        found = {}
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(process.pid) == self.pgid:
                    found[process.pid] = process
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.pgid).children(recursive=True):
                found[process.pid] = process
        return list(found.values())


def _listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket these processes listen on."""
    pids = {p.pid: p for p in processes}
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            with contextlib.suppress(psutil.Error):
                out.append((pids[conn.pid].name(), conn.laddr.ip, conn.laddr.port))
    return out


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")


@pytest.fixture(scope="session")
def ray_head():
    # Ray's socket paths must stay short: a temp dir of its own directly under /tmp.
    temp_dir = Path(tempfile.mkdtemp(prefix="tbray-", dir="/tmp"))
    node_cache = temp_dir / "node-cache"
    port = free_port()
    ports = {flag: free_port() for flag in ("--ray-client-server-port", "--node-manager-port",
                                              "--object-manager-port", "--dashboard-agent-grpc-port",
                                              "--dashboard-agent-listen-port", "--metrics-export-port",
                                              "--runtime-env-agent-port")}
    log = open(temp_dir / "head.log", "wb")
    process = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir / 'ray'}",
         "--object-store-memory=200000000", *(f"{flag}={value}" for flag, value in ports.items())],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # A Ray client connection starts a server process of its own on the head; on a busy two-core
        # machine that takes longer than Ray's default 30 s wait for its channel.
        env={**os.environ, **LOOPBACK_ENV, "TRAINBOARD_NODE_CACHE": str(node_cache),
             "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120"})
    head = RayHead(address=f"127.0.0.1:{port}", pgid=process.pid, node_cache=node_cache,
                   client_address=f"ray://127.0.0.1:{ports['--ray-client-server-port']}")
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (temp_dir / "head.log").read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {(temp_dir / 'head.log').read_text()[-3000:]}")
            time.sleep(0.1)
        # Ray starts some agents a moment after it says it runs: give them a deadline to listen.
        deadline = time.monotonic() + 20
        while len(_listening(head.processes())) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        exposed = [entry for entry in _listening(head.processes()) if not _is_loopback(entry[1])]
        assert not exposed, f"the Ray head listens beyond loopback: {exposed}"
        yield head
    finally:
        started = head.processes()  # by process id: the group and the workers' own groups
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group did not stop by itself
        for leftover in started:
            with contextlib.suppress(psutil.Error):
                leftover.kill()  # psutil checks it is still the process it was (pid and start time)
        process.wait()
        log.close()
        # The Ray client servers' own errors, for a failed test's report (the folder goes next).
        for err in sorted((temp_dir / "ray").glob("session_*/logs/ray_client_server*.err")):
            if text := err.read_text(errors="replace").strip():
                print(f"--- {err.name} (last lines) ---\n{text[-2000:]}")
        shutil.rmtree(temp_dir, ignore_errors=True)


def _trainer_actors(head: RayHead) -> list[str]:
    names = []
    for process in head.processes():
        with contextlib.suppress(psutil.Error):
            title = " ".join(process.cmdline())
            if title.startswith("ray::RayTrainer"):
                names.append(f"{process.pid} {title}")
    return names


@pytest.fixture(autouse=True)
def no_trainer_actor_left(request):
    """After a test on the Ray head, no trainer actor is left holding the cluster's CPUs: the run's
    actor goes when its run ends, the standby when its server stops."""
    yield
    if "ray_head" not in request.fixturenames:
        return
    head = request.getfixturevalue("ray_head")
    deadline = time.monotonic() + 30
    while (left := _trainer_actors(head)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"trainer actors left on the cluster after the test: {left}"
