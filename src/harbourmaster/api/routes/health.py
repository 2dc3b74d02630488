"""Liveness and readiness of the control plane (open to probes, no token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from harbourmaster import __version__
from harbourmaster.api.deps import get_platform
from harbourmaster.api.permissions import PUBLIC, requires
from harbourmaster.services.platform import Platform

router = APIRouter(tags=["health"])


@router.get("/health", openapi_extra=requires(PUBLIC))
def health(platform: Platform = Depends(get_platform)) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (("database", platform.db.check), ("artifacts", platform.artifacts.check)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}: {exc}"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={
            "status": "ok" if healthy else "degraded",
            "version": __version__,
            "checks": checks,
        },
    )
