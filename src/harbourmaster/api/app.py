"""The control-plane HTTP API (``harbourmaster server``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from harbourmaster import __version__
from harbourmaster.api.bounds import install_bounds
from harbourmaster.api.deps import install_authentication
from harbourmaster.api.errors import install_error_handlers
from harbourmaster.api.routes import alerts, dataplane, duties, governance, health, lifecycle, monitoring, registry
from harbourmaster.api.routes import cases as case_routes
from harbourmaster.api.routes import loadtest as loadtest_routes
from harbourmaster.api.routes import rollouts as rollout_routes
from harbourmaster.console.app import install_console
from harbourmaster.services.platform import Platform


def create_app(platform: Platform | None = None, *, run_monitors: bool = False) -> FastAPI:
    """A FastAPI app over one platform; every route goes through the service layer.

    With ``run_monitors`` the monitors run on their schedule (``HARBOURMASTER_MONITOR_INTERVAL``)
    in a background thread started and stopped with the server's lifespan.
    """
    platform = platform or Platform()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler = platform.monitoring.start() if run_monitors else None
        controller = platform.rollouts.start_controller() if run_monitors else None
        try:
            yield
        finally:
            if controller is not None:
                controller.stop()
            if scheduler is not None:
                scheduler.stop()

    app = FastAPI(
        title="Harbourmaster",
        version=__version__,
        description="Control plane: projects, versions, deployments, governance, monitoring and alerts.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    install_bounds(app, app.state.platform)  # inside authentication: refusals name the caller
    install_authentication(app)
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(governance.router)
    app.include_router(duties.router)
    app.include_router(dataplane.router)
    app.include_router(monitoring.router)
    app.include_router(alerts.router)
    app.include_router(lifecycle.router)
    app.include_router(loadtest_routes.router)
    app.include_router(rollout_routes.router)
    app.include_router(case_routes.router)
    install_console(app)  # the web console under /console (after the error handlers: it wraps them)
    return app
