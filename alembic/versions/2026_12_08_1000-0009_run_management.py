"""run management: notes, archiving, tags

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00

`runs.note` (markdown), `runs.archived` (hidden from the dashboard by default), and tags: `tags` (a
name and the colour of its chips) linked to runs through `run_tags` (deleted with the run or the tag).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy of `runs` (see 0004).
    op.add_column("runs", sa.Column("note", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_runs_archived", "runs", ["archived"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tag_id"),
    )
    op.create_index("ix_run_tags_tag_id", "run_tags", ["tag_id"])


def downgrade() -> None:
    op.drop_index("ix_run_tags_tag_id", table_name="run_tags")
    op.drop_table("run_tags")
    op.drop_table("tags")
    op.drop_index("ix_runs_archived", table_name="runs")
    for column in ("archived", "note"):  # no batch copy of `runs` (see upgrade)
        op.drop_column("runs", column)
