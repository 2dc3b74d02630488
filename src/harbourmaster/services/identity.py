"""Users, grants and API tokens. Tokens are random, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.permissions import GRANTED_PERMISSIONS, ROLE_NAMES, Permission
from harbourmaster.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import GrantRow, TokenRow, UserRow

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


class UserInfo(BaseModel):
    name: str
    roles: list[str]
    grants: list[str]  # "environment:permission"
    disabled: bool
    created_by: str
    created_at: datetime


class TokenInfo(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLE_NAMES))
    if unknown or not roles:
        raise InvalidInputError(
            f"unknown role(s): {', '.join(unknown)}" if unknown else "a user needs at least one role",
            f"roles are: {', '.join(ROLE_NAMES)}",
        )
    return sorted(set(roles))


def _user_info(row: UserRow, grants: list[GrantRow]) -> UserInfo:
    return UserInfo(
        name=row.name,
        roles=list(row.roles),
        grants=sorted(f"{grant.environment}:{grant.permission}" for grant in grants),
        disabled=row.disabled,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _token_info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=row.user.name,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class IdentityService:
    """Creates users, grants and tokens, and turns a presented token into an ``Actor``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- users ------------------------------------------------------------------

    def has_users(self) -> bool:
        with self._platform.db.reader() as session:
            return bool(session.scalar(select(func.count(UserRow.id))))

    def create_user(self, actor: Actor, name: str, roles: list[str]) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        if not USER_NAME_PATTERN.fullmatch(name or ""):
            raise InvalidInputError(
                f"{name!r} is not a valid user name", "use letters, digits, '.', '_', '@' or '-' (at most 128)"
            )
        roles = _check_roles(roles)
        try:
            with self._platform.db.transaction() as session:
                row = UserRow(name=name, roles=roles, created_by=actor.name)
                session.add(row)
                session.flush()
                self._platform.audit.record(session, actor, "user.create", f"user:{name}", after={"roles": roles})
                return _user_info(row, [])
        except IntegrityError as exc:
            raise ConflictError(f"user {name!r} already exists", "pick another name") from exc

    def set_roles(self, actor: Actor, name: str, roles: list[str]) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        roles = _check_roles(roles)
        with self._platform.db.transaction() as session:
            row = self._user(session, name)
            before = {"roles": list(row.roles)}
            row.roles = roles
            self._platform.audit.record(
                session, actor, "user.roles", f"user:{name}", before=before, after={"roles": roles}
            )
            return _user_info(row, self._grants(session, row))

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        with self._platform.db.transaction() as session:
            row = self._user(session, name)
            row.disabled = disabled
            self._platform.audit.record(session, actor, "user.disable" if disabled else "user.enable", f"user:{name}")
            return _user_info(row, self._grants(session, row))

    def list_users(self, actor: Actor) -> list[UserInfo]:
        self._platform.access.require(actor, Permission.ADMINISTER, target="users")
        with self._platform.db.reader() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.name)).all()
            return [_user_info(row, self._grants(session, row)) for row in rows]

    def grant(self, actor: Actor, name: str, environment: str, permission: str) -> UserInfo:
        """Let a user deploy to (or predict in) one guarded environment."""
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        allowed = sorted(p.value for p in GRANTED_PERMISSIONS)
        if permission not in allowed:
            raise InvalidInputError(f"{permission!r} cannot be granted per environment", f"use one of {allowed}")
        with self._platform.db.transaction() as session:
            self._platform.environments.row(session, environment)
            row = self._user(session, name)
            exists = session.scalar(
                select(GrantRow).where(
                    GrantRow.user_id == row.id, GrantRow.environment == environment, GrantRow.permission == permission
                )
            )
            if exists is None:
                session.add(GrantRow(user=row, environment=environment, permission=permission, created_by=actor.name))
                session.flush()
                self._platform.audit.record(
                    session,
                    actor,
                    "grant.add",
                    f"user:{name}",
                    environment=environment,
                    after={"environment": environment, "permission": permission},
                )
            return _user_info(row, self._grants(session, row))

    def revoke_grant(self, actor: Actor, name: str, environment: str, permission: str) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        with self._platform.db.transaction() as session:
            row = self._user(session, name)
            grant = session.scalar(
                select(GrantRow).where(
                    GrantRow.user_id == row.id, GrantRow.environment == environment, GrantRow.permission == permission
                )
            )
            if grant is None:
                raise NotFoundError(
                    f"{name} has no {permission} grant on {environment}", "list grants: harbourmaster users list"
                )
            session.delete(grant)
            session.flush()
            self._platform.audit.record(
                session,
                actor,
                "grant.remove",
                f"user:{name}",
                environment=environment,
                before={"environment": environment, "permission": permission},
            )
            return _user_info(row, self._grants(session, row))

    def actor_for(self, name: str, address: str | None = None) -> Actor:
        """The actor of a named user, with roles and grants (for embedded use and tests)."""
        with self._platform.db.reader() as session:
            return self._actor(session, self._user(session, name), address)

    # -- tokens -----------------------------------------------------------------

    def create_token(
        self,
        actor: Actor,
        user: str,
        name: str = "default",
        expires_in: timedelta | None = None,
        secret: str | None = None,
    ) -> IssuedToken:
        """A new token for ``user`` (anyone for themselves; admins for others)."""
        if user != actor.name:
            self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{user}")
        secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
        if len(secret) < 24:
            raise InvalidInputError("a token must have at least 24 characters", "use a random token")
        if expires_in is not None and expires_in.total_seconds() <= 0:
            raise InvalidInputError("a token's lifetime must be positive", "e.g. --expires-in 30d")
        expires_at = datetime.now(UTC) + expires_in if expires_in else None
        with self._platform.db.transaction() as session:
            user_row = self._user(session, user)
            row = TokenRow(
                user=user_row, name=name, token_hash=hash_token(secret), prefix=secret[:8], expires_at=expires_at
            )
            session.add(row)
            session.flush()
            self._platform.audit.record(
                session,
                actor,
                "token.create",
                f"user:{user}",
                after={"token_id": row.id, "name": name, "expires_at": expires_at.isoformat() if expires_at else None},
            )
            return IssuedToken(id=row.id, user=user, name=name, secret=secret, expires_at=expires_at)

    def list_tokens(self, actor: Actor, user: str | None = None) -> list[TokenInfo]:
        if user != actor.name:
            self._platform.access.require(actor, Permission.ADMINISTER, target="tokens")
        with self._platform.db.reader() as session:
            query = select(TokenRow).join(UserRow).order_by(TokenRow.id)
            if user:
                query = query.where(UserRow.name == user)
            return [_token_info(row) for row in session.scalars(query)]

    def revoke_token(self, actor: Actor, token_id: int) -> TokenInfo:
        with self._platform.db.reader() as session:  # the permission check comes before the write transaction
            owner = session.scalar(select(UserRow.name).join(TokenRow).where(TokenRow.id == token_id))
        if owner != actor.name:
            self._platform.access.require(actor, Permission.ADMINISTER, target=f"token:{token_id}")
        with self._platform.db.transaction() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id}", "list tokens: harbourmaster tokens list")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                self._platform.audit.record(
                    session, actor, "token.revoke", f"user:{row.user.name}", before={"token_id": token_id}
                )
            return _token_info(row)

    def authenticate(self, token: str | None, address: str | None = None) -> Actor:
        """The actor a token belongs to; AuthenticationError if it is not valid now."""
        if not token:
            raise AuthenticationError(
                "this server needs an API token",
                "send 'Authorization: Bearer <token>' (the SDK and CLI read HARBOURMASTER_TOKEN)",
            )
        # A read: authentication never takes the write lock (only the coarse last-use stamp below writes).
        with self._platform.db.reader() as session:
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
            actor = self._actor(session, row.user, address)
            stale = row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60
            token_id = row.id
        if stale:  # coarse, so busy clients do not write on every call
            with self._platform.db.transaction() as session:
                session.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now))
        return actor

    # -- internals --------------------------------------------------------------

    def _user(self, session: Session, name: str) -> UserRow:
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NotFoundError(f"no user named {name!r}", "list users: harbourmaster users list")
        return row

    @staticmethod
    def _grants(session: Session, row: UserRow) -> list[GrantRow]:
        return list(session.scalars(select(GrantRow).where(GrantRow.user_id == row.id)))

    def _actor(self, session: Session, row: UserRow, address: str | None) -> Actor:
        grants = frozenset((grant.environment, grant.permission) for grant in self._grants(session, row))
        return Actor(name=row.name, roles=frozenset(row.roles), kind="user", address=address, grants=grants)
