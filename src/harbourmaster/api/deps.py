"""Request dependencies: the platform and the authenticated actor."""

from __future__ import annotations

from fastapi import Request

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_actor(request: Request) -> Actor:
    """The caller, authenticated by bearer token; 401 without a valid one."""
    platform: Platform = request.app.state.platform
    address = request.client.host if request.client else None
    return platform.identity.authenticate(bearer_token(request), address)
