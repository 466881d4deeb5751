"""run_events: an index on (run_id, kind, seq) for the per-run, per-kind reads; (kind, id) dropped

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00

Compare's curves (a run's `epoch` rows), the run page's latest step, the metrics CSV and the retry
count read one run's rows of one kind in seq order. The unique (run_id, seq) index serves them only
by walking all of the run's rows (100,000 step rows to find 20 epoch rows), and SQLite's planner
picked (kind, id) instead, walking every epoch row of every run. No query reads by (kind, id) any more
(the status feed pages by feed_id): it is dropped, one index less for every metric row written (~15%
of SQLite's insert time). Plain CREATE/DROP INDEX: no batch copy.
"""
from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_run_events_run_kind_seq", "run_events", ["run_id", "kind", "seq"])
    op.drop_index("ix_run_events_kind_id", table_name="run_events")


def downgrade() -> None:
    op.create_index("ix_run_events_kind_id", "run_events", ["kind", "id"])
    op.drop_index("ix_run_events_run_kind_seq", table_name="run_events")
