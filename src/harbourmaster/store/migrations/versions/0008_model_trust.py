"""model trust

Revision ID: 0008
Revises: 0007

Platform-decided model trust: the types an admin trusts for a project
(``projects.trusted_types``, set with ``harbourmaster trust``) and the code
modules the registry derived from each version's own files
(``versions.code_modules``), which loading trusts instead of the manifest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.migration_ops import drop_plain_columns

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trusted_types", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_modules", sa.JSON(), nullable=True))


def downgrade() -> None:
    drop_plain_columns("versions", "code_modules")
    drop_plain_columns("projects", "trusted_types")
