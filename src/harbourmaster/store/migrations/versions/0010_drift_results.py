"""drift results: the per-feature time series of every deployment's drift reports

Revision ID: 0010
Revises: 0009

One row per measured feature of a report, one for the prediction and one for
the dataset verdict (``kind``), keyed by ``report_id``; indexed for reading one
feature's series of one deployment in time order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window", sa.String(length=128), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("drift_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_results_report_id"), ["report_id"], unique=False)
        batch_op.create_index(
            "ix_drift_results_series", ["project", "environment", "feature", "computed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("drift_results", schema=None) as batch_op:
        batch_op.drop_index("ix_drift_results_series")
        batch_op.drop_index(batch_op.f("ix_drift_results_report_id"))
    op.drop_table("drift_results")
