"""Request dependencies: the platform and the authenticated actor."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.errors import error_response
from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

logger = logging.getLogger(__name__)
PROTECTED_PREFIX = "/api/"
REFUSAL_INTERVAL_SECONDS = 10.0


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class RefusalTally:
    """Aggregates authentication refusals per (address, reason): the first is audited at once, the
    following ones as one entry with their count once ``interval`` seconds have passed, so a flood of
    bad tokens costs one audit write per interval, not one per request. A count still open when the
    flood stops is audited by a background flush once its interval has passed (one thread per tally,
    running only while counts are open), so no refusal goes unaudited."""

    QUIET_SECONDS = 2.0

    def __init__(self, interval: float = REFUSAL_INTERVAL_SECONDS, limit: int = 10_000) -> None:
        self.interval = interval
        self.limit = limit
        # key -> [window start, refusals not yet audited, the last refusal's time]
        self._open: dict[tuple[str, str], list[float]] = {}
        self._audits: dict[tuple[str, str], Callable[[int], None]] = {}
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], audit: Callable[[int], None] | None = None) -> int:
        """How many refusals to audit now for ``key`` (0: counted, audited later: by a later refusal, or
        by the flush through ``audit``, which writes one entry for a count)."""
        now = time.monotonic()
        with self._lock:
            if audit is not None:
                self._audits[key] = audit
            entry = self._open.get(key)
            if entry is None:
                if len(self._open) >= self.limit:
                    self._open = {k: v for k, v in self._open.items() if now - v[0] < self.interval}
                    self._audits = {k: v for k, v in self._audits.items() if k in self._open}
                self._open[key] = [now, 0, now]
                return 1
            entry[1] += 1
            entry[2] = now
            if now - entry[0] < self.interval:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_while_open, name="refusal-flush", daemon=True)
                    self._flusher.start()
                return 0
            count = int(entry[1])
            self._open[key] = [now, 0, now]
            return count

    def flush(self) -> int:
        """Audit the open counts whose interval has passed and whose refusals stopped ``QUIET_SECONDS``
        ago (while they go on, the next refusal writes the count); how many entries that wrote."""
        now = time.monotonic()
        due = []
        with self._lock:
            for key, entry in self._open.items():
                if entry[1] and now - entry[0] >= self.interval and now - entry[2] >= self.QUIET_SECONDS:
                    due.append((key, int(entry[1]), self._audits.get(key)))
                    self._open[key] = [now, 0, now]
        for _key, count, audit in due:
            if audit is not None:
                audit(count)
        return len(due)

    def _flush_while_open(self) -> None:
        while True:
            time.sleep(0.5)
            try:
                self.flush()
            except Exception:  # a failed audit write (database away) is logged; the flushing goes on
                logger.exception("auditing aggregated refusals failed")
            with self._lock:
                if not any(entry[1] for entry in self._open.values()):
                    self._flusher = None
                    return


def install_authentication(app: FastAPI) -> None:
    """Authenticate every /api/ call before routing, so a missing or bad token is always a 401
    (never a 404 or 422 that would reveal what exists to an anonymous caller). Authentication is a
    read; refusals are audited, aggregated per address and reason (``RefusalTally``)."""
    tally = RefusalTally()
    app.state.refusal_tally = tally

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith(PROTECTED_PREFIX):
            platform: Platform = request.app.state.platform
            address = request.client.host if request.client else None
            try:
                request.state.actor = await run_in_threadpool(
                    platform.identity.authenticate, bearer_token(request), address
                )
            except AuthenticationError as exc:
                target = f"{request.method} {request.url.path}"[:256]

                def audit(count: int, reason: str = exc.message, target: str = target) -> None:
                    platform.audit.record_alone(
                        Actor(name="anonymous", address=address),
                        "request.unauthenticated",
                        target,
                        outcome="denied",
                        details={"reason": reason, "count": count, "interval_seconds": tally.interval},
                    )

                count = tally.add((address or "-", exc.message), audit)
                if count:
                    await run_in_threadpool(audit, count)
                return error_response(exc.http_status, exc.code, exc.message, exc.hint)
        return await call_next(request)


def _authenticated(request: Request) -> Actor:
    actor = getattr(request.state, "actor", None)
    if actor is None:
        raise AuthenticationError("this server needs an API token", "send 'Authorization: Bearer <token>'")
    return actor


def current_actor(request: Request) -> Actor:
    """The caller, authenticated by the middleware: a person's (or process's) token, never a replica credential."""
    actor = _authenticated(request)
    if actor.kind == "replica":  # it may make data-plane calls only (routes that depend on replica_actor)
        get_platform(request).dataplane.refuse_replica_outside_data_plane(actor, f"{request.method} {request.url.path}")
    return actor


def replica_actor(request: Request) -> Actor:
    """The caller of a data-plane route; the service checks it is a replica credential of that environment."""
    return _authenticated(request)
