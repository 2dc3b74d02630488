"""The minting chain of credentials: a token, or a replica credential, dies with the token that minted it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from harbourmaster.core.duties import MAX_TOKEN_CHAIN
from harbourmaster.errors import AuthenticationError
from harbourmaster.store.tables import TokenRow

__all__ = ["check_minting_chain"]


def check_minting_chain(
    session: Session, parent_id: int | None, now: datetime, hint: str = "ask an admin for a new one"
) -> None:
    """Raise ``AuthenticationError`` unless every token up the chain from ``parent_id`` is live.

    A token, or a replica credential, dies with the token that minted it (and that token's own parents).
    """
    depth = 0
    while parent_id is not None:
        depth += 1
        parent = session.get(TokenRow, parent_id)
        if parent is None or depth > MAX_TOKEN_CHAIN:
            raise AuthenticationError("the token that minted this one is gone", hint)
        if parent.revoked_at is not None:
            raise AuthenticationError(f"the token that minted this one (id {parent.id}) was revoked", hint)
        if parent.expires_at is not None and parent.expires_at <= now:
            raise AuthenticationError(f"the token that minted this one (id {parent.id}) has expired", hint)
        parent_id = parent.parent_id
