"""Log in with an API token, log out."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console.render import render
from harbourmaster.console.session import (
    COOKIE,
    LOGIN_COOKIE,
    MAX_SECONDS,
    FormRefused,
    address_of,
    form_actor,
    log_in,
    platform_of,
    safe_next,
    store_of,
)
from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor

router = APIRouter()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_form(request: Request, next_path: str, error: str | None = None, status: int = 200) -> Response:
    secret = secrets.token_urlsafe(32)
    response = render(request, "login.html", status_code=status, next_path=next_path, login_csrf=secret, error=error)
    response.set_cookie(
        LOGIN_COOKIE,
        secret,
        max_age=3600,
        path="/console/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return _login_form(request, safe_next(next))


@router.post("/login")
async def login_submit(
    request: Request, token: str = Form(""), csrf: str = Form(""), next: str = Form("/console/")
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise FormRefused("the login form was sent without its CSRF token")
    try:
        session_id, _session, _actor = await log_in(request, token)
    except AuthenticationError as exc:
        tally = request.app.state.refusal_tally
        platform, address = platform_of(request), address_of(request)

        def audit(count: int, reason: str = exc.message) -> None:
            platform.audit.record_alone(
                Actor(name="anonymous", address=address),
                "console.login",
                "console",
                outcome="denied",
                details={"reason": reason, "count": count, "interval_seconds": tally.interval},
            )

        count = tally.add((address or "-", "console: " + exc.message), audit)
        if count:
            await run_in_threadpool(audit, count)
        return _login_form(request, safe_next(next), f"{exc.message} ({exc.hint})", status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=MAX_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request, actor: Actor = Depends(form_actor)) -> Response:
    await run_in_threadpool(store_of(request).close, request.cookies.get(COOKIE))
    await run_in_threadpool(platform_of(request).audit.record_alone, actor, "console.logout", f"user:{actor.name}")
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response
