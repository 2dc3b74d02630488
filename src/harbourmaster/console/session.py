"""Console sessions: log in with an API token, get an opaque session cookie.

The server keeps, per session, only the SHA-256 of the token (never the token) and a CSRF secret; every
request re-authenticates that hash through ``IdentityService.authenticate_hash``, so the session acts
as exactly the same ``Actor`` as the API would (roles, grants, revocation, expiry, a disabled user).
The cookie holds a random session id (HttpOnly, SameSite=Strict, Secure over https); the store keys
sessions by the id's hash. Sessions live in this process: a restart logs everyone out, and several
control-plane processes behind one address need sticky sessions (docs/console.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor
from harbourmaster.services.identity import hash_token
from harbourmaster.services.platform import Platform

COOKIE = "hm_console"
LOGIN_COOKIE = "hm_console_login"  # double-submit CSRF secret of the login form (no session exists yet)
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 24 * 3600
MAX_SESSIONS = 10_000


@dataclass
class ConsoleSession:
    token_hash: str
    user: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)


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
    """Sessions of this control-plane process, keyed by the SHA-256 of their id."""

    def __init__(self) -> None:
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, token_hash: str, user: str) -> tuple[str, ConsoleSession]:
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(token_hash=token_hash, user=user)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._expire(time.monotonic())
            if len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest
                oldest = min(self._sessions, key=lambda key: self._sessions[key].seen)
                del self._sessions[oldest]
            self._sessions[self._key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(self._key(session_id))
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS or now - session.created > MAX_SECONDS:
                del self._sessions[self._key(session_id)]
                return None
            session.seen = now
            return session

    def close(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        with self._lock:
            return self._sessions.pop(self._key(session_id), None)

    def _expire(self, now: float) -> None:
        for key in [
            k for k, s in self._sessions.items() if now - s.seen > IDLE_SECONDS or now - s.created > MAX_SECONDS
        ]:
            del self._sessions[key]


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
    session_id, session = store_of(request).open(hash_token(token), actor.name)
    await run_in_threadpool(platform.audit.record_alone, actor, "console.login", f"user:{actor.name}")
    return session_id, session, actor


async def session_actor(request: Request) -> Actor:
    """The actor of this request's console session; raises LoginRequired without a valid one.

    Dependency of every console page; sets ``request.state.console_session`` and ``.console_actor``.
    """
    session = store_of(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired()
    try:
        actor = await run_in_threadpool(
            platform_of(request).identity.authenticate_hash, session.token_hash, address_of(request)
        )
    except AuthenticationError as exc:
        store_of(request).close(request.cookies.get(COOKIE))
        raise LoginRequired(exc.message) from exc
    request.state.console_session = session
    request.state.console_actor = actor
    return actor


async def form_actor(request: Request) -> Actor:
    """Dependency of every console POST: a session AND the session's CSRF token in the form's ``csrf``
    field; otherwise FormRefused (403, audited). The service then checks the actor's permission."""
    session = store_of(request).get(request.cookies.get(COOKIE))
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
