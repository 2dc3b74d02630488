"""data plane

Revision ID: 0007
Revises: 0006

Reserved in the migration chain for: the data plane reaching state through the control plane (replica credentials).
Until that work lands it changes nothing.
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
