"""Users and API tokens. Tokens are random, shown once, and stored only as SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from harbourmaster.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import TokenRow, UserRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

TOKEN_PREFIX = "hm_"
USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: ``secret`` is the only time the token is visible."""

    id: int
    user: str
    name: str
    secret: str
    expires_at: datetime | None


class IdentityService:
    """Creates users and tokens, and turns a presented token into an ``Actor``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def has_users(self) -> bool:
        with self._platform.db.reader() as session:
            return bool(session.scalar(select(func.count(UserRow.id))))

    def create_user(self, actor: Actor, name: str, roles: list[str]) -> str:
        if not USER_NAME_PATTERN.fullmatch(name or ""):
            raise InvalidInputError(
                f"{name!r} is not a valid user name",
                "use letters, digits, '.', '_', '@' or '-' (at most 128)",
            )
        try:
            with self._platform.db.transaction() as session:
                session.add(UserRow(name=name, roles=sorted(set(roles)), created_by=actor.name))
        except IntegrityError as exc:
            raise ConflictError(f"user {name!r} already exists", "pick another name") from exc
        return name

    def create_token(
        self,
        actor: Actor,
        user: str,
        name: str = "default",
        expires_in: timedelta | None = None,
        secret: str | None = None,
    ) -> IssuedToken:
        secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
        if len(secret) < 24:
            raise InvalidInputError("a token must have at least 24 characters", "use a random token")
        expires_at = datetime.now(UTC) + expires_in if expires_in else None
        with self._platform.db.transaction() as session:
            user_row = session.scalar(select(UserRow).where(UserRow.name == user))
            if user_row is None:
                raise NotFoundError(f"no user named {user!r}", "create it first")
            row = TokenRow(
                user=user_row,
                name=name,
                token_hash=hash_token(secret),
                prefix=secret[:8],
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            return IssuedToken(id=row.id, user=user, name=name, secret=secret, expires_at=expires_at)

    def authenticate(self, token: str | None, address: str | None = None) -> Actor:
        """The actor a token belongs to; AuthenticationError if it is not valid now."""
        if not token:
            raise AuthenticationError(
                "this server needs an API token",
                "send 'Authorization: Bearer <token>' (the SDK reads HARBOURMASTER_TOKEN)",
            )
        with self._platform.db.transaction() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            now = datetime.now(UTC)
            if row is None:
                raise AuthenticationError("the API token is not valid", "ask an admin for a token")
            if row.revoked_at is not None:
                raise AuthenticationError("the API token was revoked", "ask an admin for a new one")
            if row.expires_at is not None and row.expires_at <= now:
                raise AuthenticationError("the API token has expired", "ask an admin for a new one")
            if row.user.disabled:
                raise AuthenticationError(f"user {row.user.name!r} is disabled", "ask an admin")
            row.last_used_at = now
            return Actor(name=row.user.name, roles=frozenset(row.user.roles), kind="user", address=address)
