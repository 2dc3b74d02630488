"""data plane: replica credentials (tokens scoped to one environment's data plane)

Revision ID: 0007
Revises: 0006
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
        "replica_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("replica_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replica_credentials_environment"), ["environment"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("replica_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replica_credentials_environment"))
    op.drop_table("replica_credentials")
