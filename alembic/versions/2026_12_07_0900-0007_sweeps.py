"""sweeps: searches over run settings and architectures; runs know their sweep and trial

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:00:00

A sweep's trials are ordinary runs: `runs.sweep_id` / `sweep_trial` tag them (unique together),
`sweep_params` holds the sampled parameters, `sweep_attrs` what the pruner keeps between epochs, and
`pruned_epoch` the epoch the pruner stopped the run at (it then ends `pruned`).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("sampler", sa.String(length=20), nullable=False),
        sa.Column("pruner", sa.String(length=20), nullable=True),
        sa.Column("metric", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("parallelism", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sweeps_status", "sweeps", ["status"])
    # Plain ADD COLUMN, never a batch copy of `runs` (see 0004).
    op.add_column("runs", sa.Column("sweep_id", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("sweep_trial", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("sweep_params", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("sweep_attrs", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("pruned_epoch", sa.Integer(), nullable=True))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    op.create_index("uq_runs_sweep_trial", "runs", ["sweep_id", "sweep_trial"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_runs_sweep_trial", table_name="runs")
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    for column in ("pruned_epoch", "sweep_attrs", "sweep_params", "sweep_trial", "sweep_id"):
        op.drop_column("runs", column)
    op.drop_index("ix_sweeps_status", table_name="sweeps")
    op.drop_table("sweeps")
