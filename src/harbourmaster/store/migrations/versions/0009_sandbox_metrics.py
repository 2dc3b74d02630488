"""sandbox metrics: where a version's metrics come from, and on how many rows

Revision ID: 0009
Revises: 0008

``versions.metrics_source`` is ``computed`` (the platform's training service
evaluated the pipeline on a held-out split it drew itself) or ``reported``
(numbers a registrant supplied); versions registered before this revision are
``reported``. ``versions.evaluation_rows`` is the number of held-out rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.migration_ops import drop_plain_columns

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("metrics_source", sa.String(length=16), server_default="reported", nullable=False)
        )
        batch_op.add_column(sa.Column("evaluation_rows", sa.Integer(), nullable=True))


def downgrade() -> None:
    drop_plain_columns("versions", "evaluation_rows", "metrics_source")
