"""Tables come only from migrations, and the migrations match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from app.core import all_models  # noqa: F401
from app.core.db import Base, get_engine


def test_migrations_match_models(data_dir):
    with get_engine().connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_connection_settings_per_dialect(data_dir):
    """SQLite: WAL, foreign keys, a busy timeout. PostgreSQL: a pinged pool that enforces foreign keys."""
    engine = get_engine()
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        else:
            assert engine.dialect.name == "postgresql" and engine.pool._pre_ping
            assert connection.exec_driver_sql("select version()").scalar().startswith("PostgreSQL")
    with pytest.raises(IntegrityError), engine.begin() as connection:  # an event of a run that does not exist
        connection.execute(text("insert into run_events (run_id, seq, kind, payload, ts) "
                                "values (999999, 1, 'status', '{}', 0)"))


def test_every_table_is_created_by_migrations(data_dir):
    tables = set(inspect(get_engine()).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
