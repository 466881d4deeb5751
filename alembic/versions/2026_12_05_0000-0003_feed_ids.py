"""run_events.feed_id and feed_counter: the all-runs status feed numbered in commit order

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 00:00:00

Status events get a feed number from a one-row counter when their transaction commits, so a
reader following `feed_id > cursor` never passes a row that commits late (PostgreSQL hands out
row ids at insert time and transactions commit in any order). Existing status events keep
their row id as feed id: the feed's old cursor was the row id, so a client that reconnects
across the upgrade with its Last-Event-ID neither misses nor repeats anything.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("feed_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE run_events SET feed_id = id WHERE kind = 'status'")
    with op.batch_alter_table("run_events") as batch:
        batch.create_index("ix_run_events_feed_id", ["feed_id"], unique=True)
    op.execute("INSERT INTO feed_counter (id, value) "
               "SELECT 1, COALESCE(MAX(feed_id), 0) FROM run_events")


def downgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.drop_index("ix_run_events_feed_id")
        batch.drop_column("feed_id")
    op.drop_table("feed_counter")
