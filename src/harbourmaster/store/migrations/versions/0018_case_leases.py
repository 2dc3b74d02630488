"""case leases: a worker's claim on a lifecycle case expires unless renewed, so another worker can reclaim it

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# A case running when this migration runs was claimed without a lease: give its worker this long (from its last
# change) before another worker may reclaim it.
LEGACY_LEASE = timedelta(minutes=15)


def upgrade() -> None:
    with op.batch_alter_table("lifecycle_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
    cases = sa.table(
        "lifecycle_cases",
        sa.column("id", sa.Integer()),
        sa.column("state", sa.String()),
        sa.column("claimed_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.column("claims", sa.Integer()),
    )
    bind = op.get_bind()
    running = bind.execute(sa.select(cases.c.id, cases.c.updated_at).where(cases.c.state == "running")).all()
    for case_id, updated_at in running:
        moment = updated_at if updated_at is not None else datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        bind.execute(
            sa.update(cases).where(cases.c.id == case_id).values(lease_expires_at=moment + LEGACY_LEASE, claims=1)
        )
    bind.execute(sa.update(cases).where(cases.c.state != "running", cases.c.claimed_at.is_not(None)).values(claims=1))


def downgrade() -> None:
    with op.batch_alter_table("lifecycle_cases", schema=None) as batch_op:
        batch_op.drop_column("claims")
        batch_op.drop_column("lease_expires_at")
