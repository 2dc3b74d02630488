"""quality and evidence: model-quality reports of deployments, and gate evidence per version digest

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=128), nullable=False),
        sa.Column("window_start", _WHEN, nullable=True),
        sa.Column("window_end", _WHEN, nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("labelled", sa.Integer(), nullable=False),
        sa.Column("unlabelled", sa.Integer(), nullable=False),
        sa.Column("unknown_labels", sa.Integer(), nullable=False),
        sa.Column("judged", sa.Boolean(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("worst_drop", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("computed_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id"),
    )
    with op.batch_alter_table("quality_reports", schema=None) as batch_op:
        batch_op.create_index("ix_quality_reports_series", ["project", "environment", "computed_at"], unique=False)
    op.create_table(
        "gate_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("check", sa.String(length=64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("reports", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("recorded_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_evidence", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gate_evidence_lookup", ["project", "digest", "environment", "check", "recorded_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gate_evidence", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_evidence_lookup")
    op.drop_table("gate_evidence")
    with op.batch_alter_table("quality_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_quality_reports_series")
    op.drop_table("quality_reports")
