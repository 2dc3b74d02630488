"""serving robustness

Revision ID: 0011
Revises: 0010

Reserved in the migration chain for: serving robustness (refusals per revision, capture spool).
Until that work lands it changes nothing.
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
