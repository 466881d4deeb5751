"""Shared fixtures: each test gets its own data dir and database; live servers are real processes.

The database is a new SQLite file, or with `TRAINBOARD_TEST_DB=postgres` (the second pass of
`make test`) a new database on a real PostgreSQL server the test run starts (tests/pg.py).
"""

from __future__ import annotations

import contextlib
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

from tests import pg

ROOT = Path(__file__).resolve().parent.parent
# The in-process clients' base URL: a server with no accounts answers to loopback names only.
LOCAL = "http://localhost"
# The real MNIST files the data tests import: the documented places first (TRAINBOARD_SHARED_DATA, else
# ../shared/data beside the repository), then a cache that the same download users get fills once.
SHARED_DATA = Path(os.environ.get("TRAINBOARD_SHARED_DATA", ROOT.parent / "shared" / "data"))
MNIST_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainboard" / "mnist"


def find_mnist_files(places: list[Path], cache: Path, *, mirror: str | None = None) -> Path:
    """The first folder of `places` (then `cache`) holding the four MNIST files; else download them into
    `cache` (app/datasets/download.py, TRAINBOARD_DATASET_MIRROR or the public source). Raises
    RuntimeError, saying where it looked and what the download answered, when neither works."""
    from app.datasets import download

    files = download.SOURCES["mnist"].files
    for folder in [*places, cache]:
        if all((folder / name).is_file() for name in files):
            return folder
    try:
        return download.fetch_files("mnist", cache, mirror=mirror)
    except download.DownloadFailed as exc:
        raise RuntimeError(f"the real MNIST files are not in {', '.join(str(p) for p in [*places, cache])} "
                           f"and could not be downloaded: {exc.message}. Set TRAINBOARD_SHARED_DATA to the "
                           "folder that holds mnist/ (train-images-idx3-ubyte.gz, ...)") from exc


@pytest.fixture(scope="session")
def mnist_files() -> Path:
    """The real MNIST idx files: tests that need them fail (never skip) when they can be neither found
    nor downloaded."""
    try:
        return find_mnist_files([SHARED_DATA / "mnist"], MNIST_CACHE)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """http.server on 127.0.0.1 serving `root` in a thread; yields its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dataset_mirror(tmp_path_factory: pytest.TempPathFactory, mnist_files: Path) -> Iterator[str]:
    """A local TRAINBOARD_DATASET_MIRROR serving the real MNIST files as MIRROR/mnist/<file>: the real
    download code runs, only the network is local."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "mnist").symlink_to(mnist_files.resolve(), target_is_directory=True)
    with serve_folder(root) as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir + SQLite database, migrated, and the settings pointed at it."""
    from app.core.config import get_settings
    from app.core.db import reset_engine_cache, upgrade_database

    directory = tmp_path / "data"
    directory.mkdir()
    monkeypatch.setenv("TRAINBOARD_DATA_DIR", str(directory))
    database_url = postgres_database_for(directory)
    if database_url:
        monkeypatch.setenv("TRAINBOARD_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("TRAINBOARD_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    reset_engine_cache()
    upgrade_database()
    yield directory
    reset_engine_cache()
    get_settings.cache_clear()


# Under TRAINBOARD_TEST_DB=postgres a data dir's database is a PostgreSQL one that stays with the
# folder the way trainboard.db would: a server restarted on the same folder finds its runs again.
_PG_DATABASES: dict[Path, str] = {}


def postgres_database_for(directory: Path) -> str | None:
    if pg.TEST_DB != "postgres":
        return None
    key = directory.resolve()
    if key not in _PG_DATABASES:
        _PG_DATABASES[key] = pg.server().fresh_database()
    return _PG_DATABASES[key]


def database_url_for(directory: Path) -> str:
    """The database a server on `directory` uses: its PostgreSQL one, or trainboard.db in it."""
    return postgres_database_for(directory) or f"sqlite:///{directory / 'trainboard.db'}"


def run_sql(database_url: str, statement: str, **params) -> list[tuple]:
    """Rows of one SQL statement (`:name` parameters) on SQLite or PostgreSQL, committed."""
    from sqlalchemy import text

    from app.core.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def _drop_finished_databases() -> Iterator[None]:
    """After each test, drop the PostgreSQL databases no running server uses any more."""
    yield
    running = {server.data_dir.resolve() for server in _STARTED
               if server.process is not None and server.process.poll() is None}
    for key in [key for key in _PG_DATABASES if key not in running]:
        pg.server().drop_database(_PG_DATABASES.pop(key))


@pytest.fixture
def client(data_dir: Path):
    """An in-process client for the JSON API and pages; no executor (runs stay queued)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Every LiveServer started in this test process; whatever a test left running is stopped at the end.
_STARTED: list[LiveServer] = []


class LiveServer:
    """`trainboard serve` in its own process, on a free port and a temporary data dir.

    Its database is SQLite in the data dir, or a fresh PostgreSQL database under
    TRAINBOARD_TEST_DB=postgres, unless `env` names one. With `accounts=True` the server starts
    with an admin (TRAINBOARD_ADMIN_PASSWORD) and `api()` carries a write token of that admin;
    `sign_in(page)` logs a browser page in through the login page.
    """

    ADMIN, PASSWORD = "admin", "correct horse battery staple"

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *, accounts: bool = False):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir),
                    "TRAINBOARD_NODE_CACHE": str(data_dir / "node-cache"), **(env or {})}
        if "TRAINBOARD_DATABASE_URL" not in (env or {}):
            self.env.pop("TRAINBOARD_DATABASE_URL", None)  # SQLite in data_dir unless asked otherwise
            if database_url := postgres_database_for(data_dir):  # or its PostgreSQL database
                self.env["TRAINBOARD_DATABASE_URL"] = database_url
        self.database_url = self.env.get("TRAINBOARD_DATABASE_URL") or database_url_for(data_dir)
        self.accounts = accounts
        if accounts:
            self.env.update(TRAINBOARD_ADMIN_USER=self.ADMIN, TRAINBOARD_ADMIN_PASSWORD=self.PASSWORD)
        self.token: str | None = None
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
                    if self.accounts and self.token is None:
                        self.token = self._admin_token()
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def _admin_token(self) -> str:
        """A write token for the admin the server created at start, made in its database."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from app.auth import service
        from app.auth.models import User
        from app.core.db import make_engine

        engine = make_engine(self.database_url)
        try:
            with Session(engine) as db_session, db_session.begin():
                admin = db_session.scalars(select(User).where(User.username == self.ADMIN)).one()
                return service.create_token(db_session, admin, "tests", service.WRITE)[1]
        finally:
            engine.dispose()

    def sign_in(self, page, username: str | None = None, password: str | None = None) -> None:
        """Log a Playwright page in through the real login page (as the admin unless told otherwise)."""
        page.goto(f"{self.url}/login")
        page.fill("#username", username or self.ADMIN)
        page.fill("#password", password or self.PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.url}/")

    def sql(self, statement: str, **params) -> list[tuple]:
        """Rows of one SQL statement on the server's database (SQLite or PostgreSQL), committed."""
        return run_sql(self.database_url, statement, **params)

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

        if self.database_url.startswith("sqlite") and not (self.data_dir / "trainboard.db").exists():
            return
        try:
            pids = [row[0] for row in self.sql("select pid from runs where status in ('starting', 'running')")]
        except Exception:  # noqa: BLE001  (no schema yet: the server never got that far)
            return
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, TypeError):
                pass

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    """A test or fixture that failed between start() and stop() leaves no server (or trainer) behind."""
    yield
    for server in _STARTED:
        if server.process is not None and server.process.poll() is None:  # never stopped
            server.stop()
    pg.stop_server()


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


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a CUDA device: without one they are deselected (counted as such in the
    summary), not skipped, so a CPU run under TRAINBOARD_STRICT_TESTS still allows no skips."""
    needs_cuda = [item for item in items if item.get_closest_marker("cuda")]
    if not needs_cuda:
        return
    import torch

    if torch.cuda.is_available():
        return
    config.hook.pytest_deselected(items=needs_cuda)
    items[:] = [item for item in items if not item.get_closest_marker("cuda")]


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
