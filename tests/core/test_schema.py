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
    with pytest.raises(IntegrityError), engine.begin() as connection:  # a tag on a run that does not exist
        connection.execute(text("insert into run_tags (run_id, tag_id) values (999999, 999999)"))


def test_events_of_a_run_that_does_not_exist_are_refused_and_nothing_is_stored(data_dir):
    """run_events has no foreign key (a per-row check on the bulk path): the seq block's UPDATE of the
    run row refuses the batch instead."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import NoResultFound

    from app.core.db import session_scope
    from app.runs.events import append_events
    from app.runs.models import RunEvent

    with pytest.raises(NoResultFound), session_scope() as db_session:
        append_events(db_session, 999999, [("step", {"step": i, "loss": 0.1}) for i in range(3)])
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count()).select_from(RunEvent)) == 0


def test_every_table_is_created_by_migrations(data_dir):
    tables = set(inspect(get_engine()).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
