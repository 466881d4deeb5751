"""run_events for bulk writes: partial feed_id / trainer_seq indexes, no per-row foreign-key check

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 09:00:00

Most rows are metrics written by a trainer on this server: no feed number (status events only) and no
trainer seq (ingest API only). Full indexes on those columns stored a NULL entry per metric row, two
index insertions for nothing on every write. Partial indexes (`WHERE ... IS NOT NULL`, PostgreSQL and
SQLite alike) keep the uniqueness and serve the same queries: `feed_id > n` implies the condition;
max(feed_id) states it.

The foreign key run_events.run_id → runs.id goes: PostgreSQL checks it with a trigger per row (a
lookup and a KEY SHARE lock on the run, for each of a batch's thousands of rows), which halved COPY's
rate. What it guarded is guarded once per batch instead: every insert of events runs in the
transaction that reserves their seq block with an UPDATE of the run's row (app/runs/events.py), so
the run exists and stays locked until the rows commit; deleting a run deletes its events explicitly
(app/runs/manage.py), after the run row, so it waits for a writer holding it. SQLite rebuilds the
table to drop a constraint (one copy of the rows, at upgrade).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_PARTIAL = {
    "ix_run_events_feed_id": (["feed_id"], "feed_id IS NOT NULL"),
    "uq_run_events_run_trainer_seq": (["run_id", "trainer_seq"], "trainer_seq IS NOT NULL"),
}
_FK = "fk_run_events_run_id_runs"  # SQLite's is unnamed: named here by the convention below
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("run_events_run_id_fkey", "run_events", type_="foreignkey")
    else:
        with op.batch_alter_table("run_events", naming_convention=_NAMING) as batch:
            batch.drop_constraint(_FK, type_="foreignkey")
    for name, (columns, where) in _PARTIAL.items():
        op.drop_index(name, table_name="run_events")
        op.create_index(name, "run_events", columns, unique=True,
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade() -> None:
    for name, (columns, _) in _PARTIAL.items():
        op.drop_index(name, table_name="run_events")
        op.create_index(name, "run_events", columns, unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key("run_events_run_id_fkey", "run_events", "runs", ["run_id"], ["id"], ondelete="CASCADE")
    else:
        with op.batch_alter_table("run_events") as batch:
            batch.create_foreign_key(_FK, "runs", ["run_id"], ["id"], ondelete="CASCADE")
