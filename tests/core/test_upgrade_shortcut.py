"""`upgrade_database` leaves a database at the newest revision alone without importing Alembic, and
still upgrades one that is behind. Runs on SQLite and PostgreSQL (TRAINBOARD_TEST_DB=postgres)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command

ROOT = Path(__file__).resolve().parents[2]


def _config() -> Config:
    from app.core.config import get_settings

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))
    return config


def test_the_head_read_from_the_files_is_alembics():
    from app.core.db import head_revision

    assert head_revision() == ScriptDirectory.from_config(_config()).get_current_head()


def test_a_database_at_the_head_is_not_migrated_again_and_one_behind_is(data_dir, monkeypatch):
    from app.core import db

    assert db.current_revisions() == [db.head_revision()]  # the fixture migrated it
    real = db._alembic_upgrade
    monkeypatch.setattr(db, "_alembic_upgrade", lambda: pytest.fail("a database at the head was migrated"))
    db.upgrade_database()
    command.downgrade(_config(), "-1")
    behind = db.current_revisions()
    assert behind and behind != [db.head_revision()]
    calls: list[int] = []
    monkeypatch.setattr(db, "_alembic_upgrade", lambda: (calls.append(1), real()))
    db.upgrade_database()
    assert calls == [1] and db.current_revisions() == [db.head_revision()]
