"""One throwaway PostgreSQL server per test process, and a fresh database per test that asks.

The server is the real one Debian installs (`make test` installs it): `initdb` in a temporary
folder, `pg_ctl start` on a free loopback port, stopped by `pg_ctl stop` (its postmaster pid) when
the test process ends. Databases are cheap: `fresh_database()` copies a template that already
carries the migrated schema, so a test on PostgreSQL starts as fast as one on a new SQLite file.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# `TRAINBOARD_TEST_DB=postgres` runs the database-backed tests on PostgreSQL instead of SQLite:
# `data_dir`, `client` and every LiveServer get a fresh database on the server below.
TEST_DB = os.environ.get("TRAINBOARD_TEST_DB", "sqlite")
if TEST_DB not in ("sqlite", "postgres"):
    raise RuntimeError(f"TRAINBOARD_TEST_DB must be sqlite or postgres, not {TEST_DB!r}")


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        if os.environ.get("CI") == "true" or TEST_DB == "postgres":
            raise RuntimeError("PostgreSQL is missing: `make test` installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed: run `make test` (installs it) or apt-get install postgresql")
    return found[-1]


class PostgresServer:
    """A cluster of its own: trust auth for the `trainboard` role, loopback only, fsync off."""

    def __init__(self) -> None:
        from tests.conftest import free_port

        # Not under pytest's tmp dir: the postgres user must be able to reach it (that one is 0700 root).
        self.directory = Path(tempfile.mkdtemp(prefix="trainboard-pg-"))
        self.cluster = self.directory / "cluster"
        self.port = free_port()
        self._names = itertools.count(1)
        self._template: str | None = None

    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root

    def start(self) -> PostgresServer:
        if self._as_postgres():
            shutil.chown(self.directory, "postgres")
        subprocess.run([*self._as_postgres(), pg_bin("initdb"), "-D", str(self.cluster), "-A", "trust",
                        "-U", "trainboard", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        subprocess.run([*self._as_postgres(), pg_bin("pg_ctl"), "-D", str(self.cluster), "-o", options, "-w",
                        "-l", str(self.directory / "log"), "start"], check=True, capture_output=True)
        return self

    def stop(self) -> None:
        subprocess.run([*self._as_postgres(), pg_bin("pg_ctl"), "-D", str(self.cluster), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://trainboard@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="trainboard", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(sql)

    def create_database(self, prefix: str = "tb", template: str | None = None) -> str:
        """A new, empty (or template-copied) database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def fresh_database(self) -> str:
        """A database with the migrated schema, copied from a template migrated once per process."""
        if self._template is None:
            url = self.create_database("template")
            _migrate(url)
            self._template = url.rsplit("/", 1)[1]
        return self.create_database("tb", template=self._template)

    def drop_database(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _migrate(url: str) -> None:
    """alembic upgrade head on `url` (alembic/env.py disposes its engine: a template keeps no connection)."""
    from alembic.config import Config

    from alembic import command

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


_server: PostgresServer | None = None


def server() -> PostgresServer:
    """This test process's server, started on first use (stopped by `stop_server` at the end)."""
    global _server
    if _server is None:
        _server = PostgresServer().start()
    return _server


def stop_server() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
