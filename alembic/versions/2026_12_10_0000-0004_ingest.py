"""Ingest over HTTP: trainer seqs on run events, per-run ingest tokens, external runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 00:00:00

Trainers that report over HTTP number their events themselves; `run_events.trainer_seq` keeps that
number (unique per run, so a batch sent twice is stored once) next to the server's gap-free `seq`.
`runs.last_trainer_seq` is the last one accepted (a batch that starts past it is a gap). A run's
ingest token is stored as its sha256. `runs.external` marks runs logged by a user's own script.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("last_trainer_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("ingest_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("trainer_seq", sa.Integer(), nullable=True))
        batch.create_index("uq_run_events_run_trainer_seq", ["run_id", "trainer_seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("run_events") as batch:
        batch.drop_index("uq_run_events_run_trainer_seq")
        batch.drop_column("trainer_seq")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("external")
        batch.drop_column("ingest_token_hash")
        batch.drop_column("last_trainer_seq")
