"""The control-plane HTTP API (``harbourmaster server``)."""

from __future__ import annotations

from fastapi import FastAPI

from harbourmaster import __version__
from harbourmaster.api.bounds import install_bounds
from harbourmaster.api.deps import install_authentication
from harbourmaster.api.errors import install_error_handlers
from harbourmaster.api.routes import dataplane, duties, governance, health, monitoring, registry
from harbourmaster.services.platform import Platform


def create_app(platform: Platform | None = None) -> FastAPI:
    """A FastAPI app over one platform; every route goes through the service layer."""
    app = FastAPI(
        title="Harbourmaster",
        version=__version__,
        description="Control plane: projects, versions, deployments, governance.",
    )
    app.state.platform = platform or Platform()
    install_error_handlers(app)
    install_bounds(app, app.state.platform)  # inside authentication: refusals name the caller
    install_authentication(app)
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(governance.router)
    app.include_router(duties.router)
    app.include_router(dataplane.router)
    app.include_router(monitoring.router)
    return app
