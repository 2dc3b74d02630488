"""The console's router and what it needs on the server app: sessions, static files, HTML errors.

``install_console(app)`` is called once by ``api.app.create_app``. Pages come from ``pages.PAGES``;
adding a page never changes this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from harbourmaster.console import login
from harbourmaster.console.pages import PAGES
from harbourmaster.console.render import STATIC, render
from harbourmaster.console.session import COOKIE, FormRefused, LoginRequired, SessionStore, login_path, store_of
from harbourmaster.errors import HarbourmasterError
from harbourmaster.services.actors import Actor

PREFIX = "/console"
# Scripts only from the console's own static files (vendored libraries included): no inline script, no CDN.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
Handler = Callable[[Request, Any], Awaitable[Response]]


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(login.router)
    for page in PAGES:
        router.include_router(page.router)
    return router


def _is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def _error_page(request: Request, status: int, message: str, hint: str | None) -> Response:
    return render(request, "error.html", status_code=status, status=status, message=message, hint=hint)


def install_console(app: FastAPI) -> None:
    """Mount the console under /console on the control plane's app (after its error handlers)."""
    app.state.console_sessions = SessionStore(app.state.platform.db)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(build_router(), prefix=PREFIX)

    @app.get("/", include_in_schema=False)
    async def _root(request: Request) -> Response:
        """A browser opening the server lands on the console; API clients get the usual 404."""
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        raise StarletteHTTPException(404, "Not Found")

    @app.get(PREFIX, include_in_schema=False)
    async def _console_root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if _is_console(request):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if not request.url.path.startswith(f"{PREFIX}/static/"):
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    _install_error_pages(app)


def _install_error_pages(app: FastAPI) -> None:
    """Console paths answer errors with an HTML page; every other path keeps the API's JSON handlers."""

    def console_first(exc_class: type[Exception], page: Handler) -> None:
        api_handler: Handler | None = app.exception_handlers.get(exc_class)

        async def handler(request: Request, exc: Any) -> Response:
            if _is_console(request) or api_handler is None:
                return await page(request, exc)
            return await api_handler(request, exc)

        app.add_exception_handler(exc_class, handler)

    async def harbourmaster_error(request: Request, exc: HarbourmasterError) -> Response:
        return _error_page(request, exc.http_status, exc.message, exc.hint)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()) if p not in ('query', 'body'))}: {error.get('msg')}"
            for error in exc.errors()
        )
        return _error_page(request, 400, f"the request's values are not valid: {problems}", "fix the values named")

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such console page" if exc.status_code == 404 else str(exc.detail)
        return _error_page(
            request, exc.status_code, message, "use the navigation above" if exc.status_code == 404 else None
        )

    console_first(HarbourmasterError, harbourmaster_error)
    console_first(RequestValidationError, validation_error)
    console_first(StarletteHTTPException, http_error)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = login_path(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.headers.get("hx-request"):  # an htmx fragment: send the whole page to the login form
            return Response(status_code=401, headers={"HX-Redirect": target})
        response = RedirectResponse(target, status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.exception_handler(FormRefused)
    async def _form_refused(request: Request, exc: FormRefused) -> Response:
        session = getattr(request.state, "console_session", None)
        address = request.client.host if request.client else None
        actor = Actor(name=session.user if session else "anonymous", address=address)
        await run_in_threadpool(
            request.app.state.platform.audit.record_alone,
            actor,
            "request.refused",
            f"{request.method} {request.url.path}"[:256],
            outcome="denied",
            details={"status": 403, "code": "csrf", "reason": exc.reason},
        )
        return _error_page(
            request, 403, exc.reason, "reload the page and send the form again (forms expire with the session)"
        )


__all__ = ["install_console", "store_of"]
