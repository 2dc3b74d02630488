"""audit signing

Revision ID: 0005
Revises: 0004

Reserved in the migration chain for: the signed audit chain (append-only audit rows, signed anchors).
Until that work lands it changes nothing.
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
