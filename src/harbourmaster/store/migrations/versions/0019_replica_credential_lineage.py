"""replica credential lineage: the token that minted a replica credential

Revision ID: 0019
Revises: 0018

``replica_credentials.parent_token_id`` is the API token an admin minted the
credential with (null when no token was used: the local owner, break glass, or
credentials minted before this revision). A credential dies with that token, as
a person's token dies with the token that minted it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.migration_ops import drop_plain_columns

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replica_credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_token_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    drop_plain_columns("replica_credentials", "parent_token_id")
