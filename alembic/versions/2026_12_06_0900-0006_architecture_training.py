"""architectures.training: the run settings saved with an architecture (its Keras compile/fit calls)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00

The launch form and POST /api/runs (for any setting its `config` leaves out) start from them.
Existing architectures get none ({}).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("architectures") as batch:
        batch.add_column(sa.Column("training", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("architectures") as batch:
        batch.drop_column("training")
