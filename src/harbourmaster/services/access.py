"""Access control: may this actor do this, here? Refusals are audited, and every
access to a guarded environment (prod by default), allowed or denied, too."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.permissions import GRANTED_PERMISSIONS, Permission, is_allowed, roles_with
from harbourmaster.errors import AuthenticationError, PermissionDeniedError
from harbourmaster.services import sandbox
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import EnvironmentRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

PREDICTION_GRANT_TTL_SECONDS = 30.0
PREDICTION_CACHE_LIMIT = 10_000  # expired entries are dropped when the cache reaches this size


class AccessService:
    """The single place that answers "may this actor do this?"."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._prediction_cache: dict[tuple[str, str], tuple[float, Actor]] = {}
        self._cache_lock = threading.Lock()

    def is_guarded(self, environment: str, session: Session | None = None) -> bool:
        def read(s: Session) -> bool:
            config = s.scalar(select(EnvironmentRow.config).where(EnvironmentRow.name == environment))
            return bool((config or {}).get("guarded", False))

        if session is not None:
            return read(session)
        with self._platform.db.reader() as own:
            return read(own)

    def allows(
        self, actor: Actor, permission: Permission, environment: str | None = None, session: Session | None = None
    ) -> bool:
        if actor.kind in sandbox.EMBEDDED_KINDS:  # embedded mode: a sandbox, never a guarded environment
            return sandbox.embedded_allows(
                permission, guarded=environment is not None and self.is_guarded(environment, session)
            )
        if actor.kind == "system" and permission != Permission.APPROVE:
            return True  # the platform's own processes
        guarded = (
            environment is not None and permission in GRANTED_PERMISSIONS and self.is_guarded(environment, session)
        )
        return is_allowed(actor.roles, permission, guarded=guarded, grants=actor.grants, environment=environment)

    def require(
        self,
        actor: Actor,
        permission: Permission,
        *,
        environment: str | None = None,
        target: str = "",
        session: Session | None = None,
    ) -> None:
        """Raise PermissionDeniedError (after auditing the refusal) unless allowed.

        Call it before opening a write transaction. The refusal is audited in a transaction of its
        own; if this thread already has one open (a bug), the entry is written when that one ends
        instead of waiting for it (SQLite's write lock, PostgreSQL's audit lock) while holding it.
        """
        if self.allows(actor, permission, environment, session):
            return
        self._platform.db.after_transaction(
            lambda: self._platform.audit.record_alone(
                actor,
                f"denied.{permission.value}",
                target or (environment or "-"),
                outcome="denied",
                environment=environment,
                details={"roles": sorted(actor.roles)},
            )
        )
        if actor.kind in sandbox.EMBEDDED_KINDS:
            raise PermissionDeniedError(*sandbox.explain_refusal(actor, permission, environment))
        raise PermissionDeniedError(self._explain(actor, permission, environment), self._hint(permission, environment))

    def guarded_environments(self) -> set[str]:
        """Names of the guarded environments (those with grants or sign-offs; prod by default)."""
        with self._platform.db.reader() as session:
            rows = session.execute(select(EnvironmentRow.name, EnvironmentRow.config)).all()
        return {name for name, config in rows if (config or {}).get("guarded", False)}

    def audit_guarded_read(self, actor: Actor, action: str, target: str, environments: Iterable[str | None]) -> None:
        """Record a read that returned data of guarded environments: one entry per guarded environment
        touched, with the number of items read there (nothing when no guarded data was returned)."""
        guarded = self.guarded_environments()
        counts = Counter(env for env in environments if env in guarded)
        for environment, count in sorted(counts.items()):
            self._platform.audit.record_alone(actor, action, target, environment=environment, details={"items": count})

    def audit_guarded_access(self, session: Session, actor: Actor, environment: str, action: str, target: str) -> None:
        """Record an allowed access to a guarded environment in the caller's transaction."""
        if self.is_guarded(environment, session):
            self._platform.audit.record(session, actor, action, target, environment=environment)

    def authorize_prediction(
        self, token: str | None, environment: str, address: str | None = None, *, audit_refusals: bool = True
    ) -> Actor:
        """For replicas of guarded environments: the caller, if its token may predict there.

        Positive answers are cached per token for a short time so the serving path
        does not hit the database on every request; each decision made is audited
        (refusals only with ``audit_refusals``: a replica's ``TokenGuard`` audits them in aggregate).
        """
        key = (hashlib.sha256((token or "").encode()).hexdigest(), environment)
        now = time.monotonic()
        with self._cache_lock:
            cached = self._prediction_cache.get(key)
            if cached and now - cached[0] < PREDICTION_GRANT_TTL_SECONDS:
                return cached[1]
        try:
            actor = self._platform.identity.authenticate(token, address)
        except AuthenticationError:
            if not audit_refusals:
                raise
            self._platform.audit.record_alone(
                Actor(name="anonymous", address=address),
                "predict.access",
                environment,
                outcome="denied",
                environment=environment,
                details={"reason": "no valid token"},
            )
            raise
        if audit_refusals:
            self.require(actor, Permission.PREDICT, environment=environment, target=environment)
        elif not self.allows(actor, Permission.PREDICT, environment):
            error = PermissionDeniedError(
                self._explain(actor, Permission.PREDICT, environment), self._hint(Permission.PREDICT, environment)
            )
            error.actor = actor.name  # type: ignore[attr-defined]  # for the caller's aggregated audit entry
            raise error
        self._platform.audit.record_alone(actor, "predict.access", environment, environment=environment)
        with self._cache_lock:
            if len(self._prediction_cache) >= PREDICTION_CACHE_LIMIT:
                self._prediction_cache = {
                    k: v for k, v in self._prediction_cache.items() if now - v[0] < PREDICTION_GRANT_TTL_SECONDS
                }
            self._prediction_cache[key] = (now, actor)
        return actor

    @staticmethod
    def _explain(actor: Actor, permission: Permission, environment: str | None) -> str:
        roles = ", ".join(sorted(actor.roles)) or "no role"
        where = f" in {environment}" if environment else ""
        if permission in GRANTED_PERMISSIONS and environment and set(roles_with(permission)) & set(actor.roles):
            return f"{actor.name} ({roles}) has no {permission.value} grant for {environment}"
        return f"{actor.name} ({roles}) may not {permission.value}{where}"

    @staticmethod
    def _hint(permission: Permission, environment: str | None) -> str:
        roles = ", ".join(roles_with(permission))
        grant = (
            f"; on {environment} also a grant: harbourmaster users grant USER --env {environment} "
            f"--permission {permission.value}"
            if permission in GRANTED_PERMISSIONS and environment
            else ""
        )
        return f"this needs one of the roles: {roles}{grant}"
