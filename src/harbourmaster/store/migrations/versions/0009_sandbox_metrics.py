"""sandbox metrics

Revision ID: 0009
Revises: 0008

Reserved in the migration chain for: embedded sandbox and metric provenance.
Until that work lands it changes nothing.
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
