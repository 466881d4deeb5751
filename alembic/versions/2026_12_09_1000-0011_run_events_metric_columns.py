"""run_events: a step row's loss, accuracy and epoch progress as columns too

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09 10:00:00

The run page's chart snapshot reads these three values from every step row of a run (100,000 rows for
a long one). Pulled out of the JSON payload that cost a JSON parse per row and value (PostgreSQL's
json type keeps text) — most of the snapshot's time. Stored beside the payload when the row is written,
they are a plain column read. Rows written before this migration keep NULL here and are read from the
payload (COALESCE), so nothing is rewritten at upgrade.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = ("loss", "accuracy", "progress")


def upgrade() -> None:
    for name in COLUMNS:  # plain ADD COLUMN on both databases: no table copy
        op.add_column("run_events", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
