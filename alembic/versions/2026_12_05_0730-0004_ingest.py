"""Ingest over HTTP: trainer seqs on run events, per-run ingest tokens, external runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 07:30:00

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
    # Plain ADD COLUMN, never a batch copy of `runs`: on SQLite that drops and recreates the table,
    # and with foreign keys on, dropping `runs` cascades to every run's events.
    op.add_column("runs", sa.Column("last_trainer_seq", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("ingest_token_hash", sa.String(length=64), nullable=True))
    op.add_column("runs", sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("run_events", sa.Column("trainer_seq", sa.Integer(), nullable=True))
    op.create_index("uq_run_events_run_trainer_seq", "run_events", ["run_id", "trainer_seq"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_run_events_run_trainer_seq", table_name="run_events")
    op.drop_column("run_events", "trainer_seq")
    for column in ("external", "ingest_token_hash", "last_trainer_seq"):  # no batch copy of `runs` (see upgrade)
        op.drop_column("runs", column)
