"""Migrations go down to nothing and up again on SQLite and on PostgreSQL, ending where the models are."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from alembic import command
from tests.core.test_postgres import pg_settings, postgres_url  # noqa: F401  (the PostgreSQL fixtures)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("postgres")


def _round_trip() -> None:
    from app.core import all_models  # noqa: F401
    from app.core.config import get_settings
    from app.core.db import Base, get_engine

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(inspect(get_engine()).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    with get_engine().connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_migrations_down_and_up_on_sqlite(data_dir):
    _round_trip()


def test_migrations_down_and_up_on_postgres(pg_settings):  # noqa: F811
    _round_trip()
