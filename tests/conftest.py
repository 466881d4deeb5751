"""Shared fixtures: each test gets its own data dir and SQLite file; live servers are real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The real MNIST / Fashion-MNIST files the data tests import (TRAINBOARD_SHARED_DATA overrides).
SHARED_DATA = Path(os.environ.get("TRAINBOARD_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def mnist_files() -> Path:
    """The real MNIST idx files: tests that need them fail (never skip) when they are missing."""
    folder = SHARED_DATA / "mnist"
    if not folder.is_dir():
        pytest.fail(f"the real MNIST files are not at {folder}: set TRAINBOARD_SHARED_DATA to the folder "
                    "that holds mnist/ (train-images-idx3-ubyte.gz, ...)")
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir + SQLite database, migrated, and the settings pointed at it."""
    from app.core.config import get_settings
    from app.core.db import reset_engine_cache, upgrade_database

    directory = tmp_path / "data"
    directory.mkdir()
    monkeypatch.setenv("TRAINBOARD_DATA_DIR", str(directory))
    monkeypatch.delenv("TRAINBOARD_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    reset_engine_cache()
    upgrade_database()
    yield directory
    reset_engine_cache()
    get_settings.cache_clear()


@pytest.fixture
def client(data_dir: Path):
    """An in-process client for the JSON API and pages; no executor (runs stay queued)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Every LiveServer started in this test process; whatever a test left running is stopped at the end.
_STARTED: list[LiveServer] = []


class LiveServer:
    """`trainboard serve` in its own process, on a free port and a temporary data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir),
                    "TRAINBOARD_NODE_CACHE": str(data_dir / "node-cache"), **(env or {})}
        if "TRAINBOARD_DATABASE_URL" not in (env or {}):
            self.env.pop("TRAINBOARD_DATABASE_URL", None)  # SQLite in data_dir unless asked otherwise
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir / "server.log"

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        _STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.kill_trainers()

    def kill_trainers(self) -> None:
        """Trainers outlive their server by design (own process group); tests clean them up."""
        import signal
        import sqlite3

        db = self.data_dir / "trainboard.db"
        if not db.exists():
            return
        with sqlite3.connect(db) as connection:
            pids = [row[0] for row in connection.execute("select pid from runs where status in ('starting', 'running')")]
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, TypeError):
                pass

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    """A test or fixture that failed between start() and stop() leaves no server (or trainer) behind."""
    yield
    for server in _STARTED:
        if server.process is not None and server.process.poll() is None:  # never stopped
            server.stop()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "server-data").start()
    yield server
    server.stop()


# --- browser tests: Playwright drives the system Chromium (never `playwright install`) ---
def find_chromium() -> str | None:
    """The browser the way the Makefile finds it: `chromium` on PATH, else /usr/bin/chromium."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


# `make test` sets TRAINBOARD_STRICT_TESTS=1 after installing what the suite needs: there, a
# test that would be skipped (no browser, no PostgreSQL, no data files) fails instead.
STRICT = os.environ.get("TRAINBOARD_STRICT_TESTS") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed: run `make test` (installs it) or apt-get install chromium")
    return {
        **browser_type_launch_args,
        "executable_path": chromium,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """Playwright's own waits (`wait_for_function` with an expression) evaluate strings in the page,
    which the app's Content-Security-Policy forbids: tests bypass it, except tests/browser/test_csp.py,
    which checks the pages under the real policy in a context of its own."""
    return {**browser_context_args, "bypass_csp": True}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under `make test` a skip is a failure: nothing the suite promises may silently not run."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under TRAINBOARD_STRICT_TESTS=1 (make test), which allows no skips: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (e.g. `pytest.importorskip`)."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} skipped at collection under TRAINBOARD_STRICT_TESTS=1: {report.longrepr}"
