"""Users, grants and API tokens. Tokens are random, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.duties import (
    disable_step,
    enable_step,
    grant_step,
    max_token_seconds,
    role_step,
    token_expiry,
    token_step,
)
from harbourmaster.core.permissions import GRANTED_PERMISSIONS, ROLE_NAMES, Permission
from harbourmaster.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import REPLICA_TOKEN_PREFIX
from harbourmaster.services.token_lineage import check_minting_chain
from harbourmaster.store.tables import GrantRow, TokenRow, UserRow

if TYPE_CHECKING:
    from harbourmaster.services.duties import DutyRequestInfo
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
    parent_id: int | None = None


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
        parent_id=row.parent_id,
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
        with self._platform.db.reader() as session:
            if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise ConflictError(f"user {name!r} already exists", "pick another name")
        step = role_step(actor.name, "user.create", name, set(), set(roles))
        if step is not None:
            self._platform.duties.guard(actor, step, {"name": name, "roles": roles})
        with self._platform.db.transaction() as session:
            return self._create_user_in(session, actor, name, roles)

    def _create_user_in(
        self, session: Session, actor: Actor, name: str, roles: list[str], **details: object
    ) -> UserInfo:
        try:
            with session.begin_nested():
                row = UserRow(name=name, roles=roles, created_by=actor.name)
                session.add(row)
                session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"user {name!r} already exists", "pick another name") from exc
        self._platform.audit.record(
            session, actor, "user.create", f"user:{name}", after={"roles": roles}, details=details or None
        )
        return _user_info(row, [])

    def set_roles(self, actor: Actor, name: str, roles: list[str]) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        roles = _check_roles(roles)
        with self._platform.db.reader() as session:
            current = set(self._user(session, name).roles)
        step = role_step(actor.name, "user.roles", name, current, set(roles))
        if step is not None:
            self._platform.duties.guard(actor, step, {"name": name, "roles": roles})
        with self._platform.db.transaction() as session:
            return self._set_roles_in(session, actor, name, roles)

    def _set_roles_in(self, session: Session, actor: Actor, name: str, roles: list[str], **details: object) -> UserInfo:
        row = self._user(session, name)
        before = {"roles": list(row.roles)}
        if set(roles) != set(row.roles):
            row.roles = roles
            row.roles_updated_at = datetime.now(UTC)
        self._platform.audit.record(
            session, actor, "user.roles", f"user:{name}", before=before, after={"roles": roles}, details=details or None
        )
        return _user_info(row, self._grants(session, row))

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> UserInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{name}")
        with self._platform.db.reader() as session:
            row = self._user(session, name)
            if disabled:
                step = disable_step(actor.name, name, set(row.roles), row.disabled)
            else:
                step = enable_step(actor.name, name, set(row.roles), row.disabled)
        if step is not None:
            self._platform.duties.guard(actor, step, {"name": name})
        with self._platform.db.transaction() as session:
            return self._set_disabled_in(session, actor, name, disabled)

    def _set_disabled_in(
        self, session: Session, actor: Actor, name: str, disabled: bool, **details: object
    ) -> UserInfo:
        row = self._user(session, name)
        row.disabled = disabled
        self._platform.audit.record(
            session, actor, "user.disable" if disabled else "user.enable", f"user:{name}", details=details or None
        )
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
        with self._platform.db.reader() as session:
            self._platform.environments.row(session, environment)
            self._user(session, name)
        step = grant_step(actor.name, name, environment, permission, self._platform.access.is_guarded(environment))
        if step is not None:
            self._platform.duties.guard(
                actor, step, {"name": name, "environment": environment, "permission": permission}
            )
        with self._platform.db.transaction() as session:
            return self._grant_in(session, actor, name, environment, permission)

    def _grant_in(
        self, session: Session, actor: Actor, name: str, environment: str, permission: str, **details: object
    ) -> UserInfo:
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
                details=details or None,
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
        """A new token for ``user`` (anyone for themselves; admins for others, confirmed by a second admin).

        A token minted with a token expires no later than its parent and dies with it; no token
        outlives the maximum lifetime set for its user's roles.
        """
        if user != actor.name:
            self._platform.access.require(actor, Permission.ADMINISTER, target=f"user:{user}")
        if secret is not None and len(secret) < 24:
            raise InvalidInputError("a token must have at least 24 characters", "use a random token")
        if expires_in is not None and expires_in.total_seconds() <= 0:
            raise InvalidInputError("a token's lifetime must be positive", "e.g. --expires-in 30d")
        with self._platform.db.reader() as session:
            self._user(session, user)
        payload = {
            "user": user,
            "name": name,
            "expires_in_seconds": expires_in.total_seconds() if expires_in else None,
            "parent_id": actor.token_id,
        }
        step = token_step(actor.name, user)
        if step is not None:
            self._platform.duties.guard(actor, step, payload)
        with self._platform.db.transaction() as session:
            return self._create_token_in(session, actor, user, name, expires_in, actor.token_id, secret)

    def _create_token_in(
        self,
        session: Session,
        actor: Actor,
        user: str,
        name: str,
        expires_in: timedelta | None,
        parent_id: int | None,
        secret: str | None = None,
        **details: object,
    ) -> IssuedToken:
        secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
        user_row = self._user(session, user)
        parent = session.get(TokenRow, parent_id) if parent_id is not None else None
        limits = self._platform.duties.settings(session).token_max_lifetime_seconds
        expires_at = token_expiry(
            datetime.now(UTC),
            expires_in,
            max_token_seconds(set(user_row.roles), limits),
            parent.expires_at if parent else None,
            parent is not None,
        )
        row = TokenRow(
            user=user_row,
            name=name,
            token_hash=hash_token(secret),
            prefix=secret[:8],
            expires_at=expires_at,
            parent_id=parent.id if parent else None,
        )
        session.add(row)
        session.flush()
        self._platform.audit.record(
            session,
            actor,
            "token.create",
            f"user:{user}",
            after={
                "token_id": row.id,
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "parent_id": row.parent_id,
            },
            details=details or None,
        )
        return IssuedToken(id=row.id, user=user, name=name, secret=secret, expires_at=expires_at)

    def carry_out(self, session: Session, actor: Actor, request: DutyRequestInfo, payload: dict) -> dict:
        """Carry out a confirmed sensitive step in the confirming transaction; what to show the confirmer."""
        details = {"request": request.id, "requested_by": request.requested_by}
        if request.action == "user.create":
            return {"user": self._create_user_in(session, actor, payload["name"], payload["roles"], **details)}
        if request.action == "user.roles":
            return {"user": self._set_roles_in(session, actor, payload["name"], payload["roles"], **details)}
        if request.action == "user.enable":
            return {"user": self._set_disabled_in(session, actor, payload["name"], False, **details)}
        if request.action == "user.disable":
            return {"user": self._set_disabled_in(session, actor, payload["name"], True, **details)}
        if request.action == "grant.add":
            user = self._grant_in(
                session, actor, payload["name"], payload["environment"], payload["permission"], **details
            )
            return {"user": user}
        if request.action == "token.create":
            seconds = payload.get("expires_in_seconds")
            issued = self._create_token_in(
                session,
                actor,
                payload["user"],
                payload["name"],
                timedelta(seconds=seconds) if seconds else None,
                payload.get("parent_id"),
                **details,
            )
            return {"token": issued}
        if request.action == "environment.configure":
            environment = self._platform.environments.configure_in(
                session, actor, payload["name"], payload["config"], payload.get("position"), **details
            )
            return {"environment": environment}
        if request.action == "replica-credential.create":
            seconds = payload.get("expires_in_seconds")
            credential = self._platform.dataplane.create_credential_in(
                session,
                actor,
                payload["environment"],
                payload["name"],
                timedelta(seconds=seconds) if seconds else None,
                payload.get("parent_id"),
                **details,
            )
            return {"credential": credential}
        if request.action == "duties.mode":
            return {"settings": self._platform.duties.apply_mode_in(session, actor, payload["mode"], request.id)}
        raise InvalidInputError(f"request {request.id} has an unknown action {request.action!r}", "reject it")

    def list_tokens(self, actor: Actor, user: str | None = None) -> list[TokenInfo]:
        if user != actor.name:
            self._platform.access.require(actor, Permission.ADMINISTER, target="tokens")
        with self._platform.db.reader() as session:
            query = select(TokenRow).join(UserRow).order_by(TokenRow.id)
            if user:
                self._user(session, user)  # a typo is named, not an empty list
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
        if token.startswith(REPLICA_TOKEN_PREFIX):  # a replica credential: one environment's data plane, no role
            return self._platform.dataplane.authenticate(hash_token(token), address)
        return self.authenticate_hash(hash_token(token), address)

    def authenticate_hash(self, token_hash: str, address: str | None = None) -> Actor:
        """The actor of a person's token known by its SHA-256 only (the console's session keeps no token):
        the same checks as ``authenticate``, so revocation, expiry and a disabled user end the session."""
        # A read: authentication never takes the write lock (only the coarse last-use stamp below writes).
        with self._platform.db.reader() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.token_hash == token_hash))
            now = datetime.now(UTC)
            if row is None:
                raise AuthenticationError("the API token is not valid", "ask an admin for a token")
            if row.revoked_at is not None:
                raise AuthenticationError("the API token was revoked", "ask an admin for a new one")
            if row.expires_at is not None and row.expires_at <= now:
                raise AuthenticationError("the API token has expired", "ask an admin for a new one")
            if row.user.disabled:
                raise AuthenticationError(f"user {row.user.name!r} is disabled", "ask an admin")
            self._check_lineage(session, row, now)
            actor = replace(self._actor(session, row.user, address), token_id=row.id)
            stale = row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60
            token_id = row.id
        if stale:  # coarse, so busy clients do not write on every call
            with self._platform.db.transaction() as session:
                session.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now))
        return actor

    # -- internals --------------------------------------------------------------

    def _check_lineage(self, session: Session, row: TokenRow, now: datetime) -> None:
        """A token dies with the token that minted it, and never outlives its roles' maximum lifetime."""
        limit = max_token_seconds(
            set(row.user.roles), self._platform.duties.settings(session).token_max_lifetime_seconds
        )
        if limit is not None and (now - row.created_at).total_seconds() > limit:
            raise AuthenticationError(
                "the API token is older than its roles allow", "ask an admin for a new one: harbourmaster tokens create"
            )
        check_minting_chain(session, row.parent_id, now)

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
