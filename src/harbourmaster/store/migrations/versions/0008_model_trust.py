"""model trust

Revision ID: 0008
Revises: 0007

Reserved in the migration chain for: platform-decided model trust (admin trusted types).
Until that work lands it changes nothing.
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
