"""Console sessions: log in with an API token, get an opaque session cookie.

The server keeps, per session, only the SHA-256 of the token (never the token) and a CSRF secret; every
request re-authenticates that hash through ``IdentityService.authenticate_hash``, so the session acts
as exactly the same ``Actor`` as the API would (roles, grants, revocation, expiry, a disabled user).
The cookie holds a random session id (HttpOnly, SameSite=Strict, Secure over https); the store keys
sessions by the id's hash, in the metadata database: several control-plane processes behind one address
share them, a restart keeps them, and a log-out ends the session wherever it is used next.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi import Request
from sqlalchemy import delete, select, update
from starlette.concurrency import run_in_threadpool

from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor
from harbourmaster.services.identity import hash_token
from harbourmaster.services.platform import Platform
from harbourmaster.store.db import Database
from harbourmaster.store.tables import ConsoleSessionRow

COOKIE = "hm_console"
LOGIN_COOKIE = "hm_console_login"  # double-submit CSRF secret of the login form (no session exists yet)
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 24 * 3600
MAX_SESSIONS_PER_USER = 100
SEEN_EVERY_SECONDS = 60  # the last-seen time is coarse, so that a page load does not write
PURGE_EVERY_SECONDS = 300


@dataclass
class ConsoleSession:
    token_hash: str
    user: str
    csrf: str
    created: datetime
    seen: datetime


class LoginRequired(Exception):
    """No valid session: the console answers with the login page (a redirect for GET)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class FormRefused(Exception):
    """A POST form without a valid CSRF token (or without a session): 403, audited."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionStore:
    """Console sessions in the metadata database (``console_sessions``), keyed by the SHA-256 of their id:
    every control-plane process behind one address sees them, they outlive a restart, and a log-out
    ends the session everywhere. The last-seen time is written at most once per ``SEEN_EVERY``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._purged = 0.0

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, token_hash: str, user: str) -> tuple[str, ConsoleSession]:
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = ConsoleSession(token_hash, user, secrets.token_urlsafe(32), now, now)
        with self._db.transaction() as db:
            db.add(
                ConsoleSessionRow(
                    id_hash=self._key(session_id),
                    token_hash=token_hash,
                    user=user,
                    csrf=session.csrf,
                    created_at=now,
                    seen_at=now,
                )
            )
            # A person's oldest sessions beyond the limit end (each log-in is a row: bounded per user).
            kept = (
                select(ConsoleSessionRow.id_hash)
                .where(ConsoleSessionRow.user == user)
                .order_by(ConsoleSessionRow.seen_at.desc())
                .limit(MAX_SESSIONS_PER_USER)
            )
            db.flush()
            db.execute(
                delete(ConsoleSessionRow).where(
                    ConsoleSessionRow.user == user, ConsoleSessionRow.id_hash.not_in(kept.scalar_subquery())
                )
            )
            if time.monotonic() - self._purged > PURGE_EVERY_SECONDS:
                self._purged = time.monotonic()
                db.execute(
                    delete(ConsoleSessionRow).where(
                        (ConsoleSessionRow.seen_at < now - timedelta(seconds=IDLE_SECONDS))
                        | (ConsoleSessionRow.created_at < now - timedelta(seconds=MAX_SECONDS))
                    )
                )
        return session_id, session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session of this id (None: unknown, idle too long or too old; an expired one is removed)."""
        if not session_id:
            return None
        key = self._key(session_id)
        now = datetime.now(UTC)
        with self._db.reader() as db:
            row = db.get(ConsoleSessionRow, key)
            if row is None:
                return None
            session = ConsoleSession(row.token_hash, row.user, row.csrf, row.created_at, row.seen_at)
        if (now - session.seen).total_seconds() > IDLE_SECONDS or (now - session.created).total_seconds() > MAX_SECONDS:
            self.close(session_id)
            return None
        if (now - session.seen).total_seconds() > SEEN_EVERY_SECONDS:
            with self._db.transaction() as db:
                db.execute(update(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == key).values(seen_at=now))
            session.seen = now
        return session

    def close(self, session_id: str | None) -> ConsoleSession | None:
        """End the session (log-out): it is gone for every process."""
        if not session_id:
            return None
        with self._db.transaction() as db:
            row = db.get(ConsoleSessionRow, self._key(session_id))
            if row is None:
                return None
            session = ConsoleSession(row.token_hash, row.user, row.csrf, row.created_at, row.seen_at)
            db.delete(row)
        return session


def store_of(request: Request) -> SessionStore:
    return request.app.state.console_sessions


def platform_of(request: Request) -> Platform:
    return request.app.state.platform


def address_of(request: Request) -> str | None:
    return request.client.host if request.client else None


async def log_in(request: Request, token: str) -> tuple[str, ConsoleSession, Actor]:
    """Authenticate ``token`` as the API would and open a session for it (AuthenticationError if not valid)."""
    platform = platform_of(request)
    token = token.strip()
    if not token:
        raise AuthenticationError("enter an API token", "ask an admin for one: harbourmaster tokens create")
    actor = await run_in_threadpool(platform.identity.authenticate, token, address_of(request))
    if actor.kind == "replica":
        raise AuthenticationError(
            "a replica credential cannot log in to the console", "use a person's token (harbourmaster tokens create)"
        )
    session_id, session = await run_in_threadpool(store_of(request).open, hash_token(token), actor.name)
    await run_in_threadpool(platform.audit.record_alone, actor, "console.login", f"user:{actor.name}")
    return session_id, session, actor


async def session_actor(request: Request) -> Actor:
    """The actor of this request's console session; raises LoginRequired without a valid one.

    Dependency of every console page; sets ``request.state.console_session`` and ``.console_actor``.
    """
    session = await run_in_threadpool(store_of(request).get, request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired()
    try:
        actor = await run_in_threadpool(
            platform_of(request).identity.authenticate_hash, session.token_hash, address_of(request)
        )
    except AuthenticationError as exc:
        await run_in_threadpool(store_of(request).close, request.cookies.get(COOKIE))
        raise LoginRequired(exc.message) from exc
    request.state.console_session = session
    request.state.console_actor = actor
    return actor


async def form_actor(request: Request) -> Actor:
    """Dependency of every console POST: a session AND the session's CSRF token in the form's ``csrf``
    field; otherwise FormRefused (403, audited). The service then checks the actor's permission."""
    session = await run_in_threadpool(store_of(request).get, request.cookies.get(COOKIE))
    if session is None:
        raise FormRefused("a console form was sent without a session")
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        request.state.console_session = session
        raise FormRefused("a console form was sent without the session's CSRF token")
    return await session_actor(request)


def login_path(next_path: str = "") -> str:
    return "/console/login" + (f"?next={quote(next_path, safe='/')}" if next_path else "")


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a console path only (never another site)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"
