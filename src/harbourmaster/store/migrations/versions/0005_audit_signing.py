"""audit signing

Revision ID: 0005
Revises: 0004

The signed audit chain: each entry's Ed25519 signature; approvals, promotions and
deployment events point at the audit entry that recorded them; and triggers make
``audit_events`` append-only for the application's database role.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.audit_guard import DROP, append_only_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LINKED = ("approvals", "promotions", "deployment_events")


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("signature", sa.String(length=128), nullable=True))
    for table in LINKED:
        op.add_column(table, sa.Column("audit_seq", sa.Integer(), nullable=True))
    for statement in append_only_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    for table in LINKED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("audit_seq")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("signature")
