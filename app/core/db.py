"""Database engine and sessions. SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings

ROOT_DIR = Path(__file__).resolve().parents[2]  # the repository: alembic.ini and alembic/


class Base(DeclarativeBase):
    pass


def _configure_sqlite(engine: Engine) -> None:
    # A deferred transaction that reads and then writes must upgrade its lock, and in WAL mode
    # that fails at once ("database is locked") when another writer committed in between: the
    # busy timeout does not apply. Writing sessions therefore take the write lock up front
    # (BEGIN IMMEDIATE) and queue on the busy timeout; read-only sessions stay deferred.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # SQLite's advice (sqlite.org/lang_analyze.html): `PRAGMA optimize` before closing a connection
    # re-analyzes the tables its queries used whose statistics are missing or out of date.
    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection, _record):
        try:
            dbapi_connection.execute("PRAGMA optimize")
        except Exception:  # noqa: BLE001  (a locked or closing database: the next close tries again)
            pass

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """Create an engine for `url` with the project's per-dialect settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(url)


@lru_cache
def _session_factory(write: bool) -> sessionmaker[Session]:
    engine = get_engine()
    if write:
        engine = engine.execution_options(sqlite_immediate=True)
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(*, write: bool = True) -> Iterator[Session]:
    """A short session that commits on success: for background threads and trainers."""
    session = _session_factory(write)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine_cache() -> None:
    """Forget cached engines (tests switch databases between cases)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()


def upgrade_database() -> None:
    """Apply pending Alembic migrations (the only way tables are created). A database already at the
    newest revision is left as is without importing Alembic (~0.1 s of every server restart)."""
    head = head_revision()
    if head is None or current_revisions() != [head]:
        _alembic_upgrade()
    analyze_sqlite()


def head_revision() -> str | None:
    """The newest migration's revision, read from alembic/versions without importing Alembic: the one
    revision no file names as its down_revision. None when that is not exactly one (Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (ROOT_DIR / "alembic" / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r"^revision(?:\s*:[^=\n]*)?\s*=\s*[\"']([^\"']+)[\"']", source, re.M)
        down = re.search(r"^down_revision(?:\s*:[^=\n]*)?\s*=\s*(.+)$", source, re.M)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revisions() -> list[str]:
    """The revisions the database says it is at (none for a new database)."""
    try:
        with get_engine().connect() as connection:
            return [row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")]
    except DBAPIError:  # no alembic_version table yet
        return []


def _alembic_upgrade() -> None:
    from alembic.config import Config

    from alembic import command

    config = Config(str(ROOT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT_DIR / "alembic"))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))
    command.upgrade(config, "head")


# Rows ANALYZE samples per index: statistics good enough for the planner in milliseconds on any size.
ANALYSIS_LIMIT = 1000


def analyze_sqlite() -> None:
    """Give SQLite's planner statistics (sqlite_stat1), sampled: without them it may pick a poor index for
    one run's rows of one kind (before 0008 it walked every run's epoch rows through (kind, id)). Runs after
    the migrations (each start of the server); PostgreSQL's autovacuum analyzes by itself."""
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.execution_options(sqlite_immediate=True).connect() as connection:
            connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    except OperationalError as exc:  # locked past the busy timeout: the planner does without until next time
        logging.getLogger(__name__).warning("ANALYZE skipped: %s", exc)
