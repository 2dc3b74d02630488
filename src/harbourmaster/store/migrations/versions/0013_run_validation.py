"""run validation: each run's steps and the verdict on its input data

Revision ID: 0013
Revises: 0012

``runs.validation`` is valid, warnings or invalid (NULL for runs recorded before
this revision, or not checked); ``runs.validation_report`` holds the findings per
column; ``runs.steps`` each step's start, end, duration and rows in and out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.migration_ops import drop_plain_columns

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validation", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("validation_report", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("steps", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    drop_plain_columns("runs", "steps", "validation_report", "validation")
