"""The same schema and run lifecycle on a real PostgreSQL server (a throwaway cluster)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import LiveServer, free_port
from tests.runs.helpers import run_body, wait_status

pytestmark = pytest.mark.xdist_group("postgres")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        if os.environ.get("CI") == "true":
            raise RuntimeError("PostgreSQL is missing in CI: `make test` installs it with apt-get")
        pytest.skip("PostgreSQL is not installed: run `make test` (installs it) or apt-get install postgresql")
    return found[-1]


@pytest.fixture(scope="module")
def postgres_url() -> str:
    # Not under pytest's tmp dir: the postgres user must be able to reach it (that one is 0700 root).
    directory = Path(tempfile.mkdtemp(prefix="trainboard-pg-"))
    cluster = directory / "cluster"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:  # initdb refuses to run as root
        shutil.chown(directory, "postgres")
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(cluster), "-A", "trust", "-U", "trainboard",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(cluster), "-o", options, "-w", "-l",
                    str(directory / "log"), "start"], check=True, capture_output=True)
    subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "trainboard", "trainboard"],
                   check=True, capture_output=True)
    yield f"postgresql+psycopg://trainboard@127.0.0.1:{port}/trainboard"
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(cluster), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_settings(postgres_url, tmp_path, monkeypatch):
    from app.core.config import get_settings
    from app.core.db import reset_engine_cache

    monkeypatch.setenv("TRAINBOARD_DATABASE_URL", postgres_url)
    monkeypatch.setenv("TRAINBOARD_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    reset_engine_cache()
    yield postgres_url
    reset_engine_cache()
    get_settings.cache_clear()


def test_migrations_match_models_on_postgres(pg_settings):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.core import all_models  # noqa: F401
    from app.core.db import Base, get_engine, upgrade_database

    upgrade_database()
    with get_engine().connect() as connection:
        assert connection.execute(text("select version()")).scalar().startswith("PostgreSQL")
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], diff


def test_a_run_trains_to_completion_on_postgres(pg_settings, tmp_path):
    server = LiveServer(tmp_path / "live", env={"TRAINBOARD_DATABASE_URL": pg_settings}).start()
    try:
        with server.api() as api:
            run = api.post("/api/runs", json=run_body(epochs=2)).json()
            done = wait_status(api, run["id"], "completed", "failed")
            assert done["status"] == "completed", done["failure_reason"]
            seqs = [r["seq"] for r in api.get(f"/api/runs/{run['id']}/metrics").json()]
            assert seqs == list(range(1, len(seqs) + 1))
            assert api.get(f"/api/runs/{run['id']}/evaluation").json()["accuracy"] > 0.5
        assert not (Path(server.data_dir) / "trainboard.db").exists(), "must not fall back to SQLite"
    finally:
        server.stop()
