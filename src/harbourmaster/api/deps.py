"""Request dependencies: the platform and the authenticated actor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.errors import error_response
from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

PROTECTED_PREFIX = "/api/"


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def install_authentication(app: FastAPI) -> None:
    """Authenticate every /api/ call before routing, so a missing or bad token is always a 401
    (never a 404 or 422 that would reveal what exists to an anonymous caller)."""

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
