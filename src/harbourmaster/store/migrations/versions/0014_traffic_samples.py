"""traffic samples: replicas' cumulative request, error, fallback and latency counters per project

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.Float(), nullable=False),
        sa.Column("errors", sa.Float(), nullable=False),
        sa.Column("fallbacks", sa.Float(), nullable=False),
        sa.Column("timed", sa.Float(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("traffic_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_traffic_samples_sampled_at"), ["sampled_at"], unique=False)
        batch_op.create_index("ix_traffic_samples_series", ["environment", "project", "sampled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("traffic_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_traffic_samples_series")
        batch_op.drop_index(batch_op.f("ix_traffic_samples_sampled_at"))
    op.drop_table("traffic_samples")
