"""Bounded input on the control plane: request sizes, NUL bytes, integer ranges, text lengths.

``BodyLimitMiddleware`` refuses a body that is too large before the application reads it: at once
when ``Content-Length`` says so, otherwise as soon as the streamed bytes pass the limit. Bundle
uploads have their own, larger limit. Every refusal made here is audited.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harbourmaster.core.limits import MAX_INT, MAX_KEY, MAX_NAME, MAX_TEXT
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import MAX_PREDICTION_FILE_BYTES
from harbourmaster.services.platform import Platform

BoundedInt = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_INT)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
Key = Annotated[str, Field(max_length=MAX_KEY)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
VersionRef = PositiveInt | Annotated[str, Field(max_length=MAX_NAME)]

UPLOAD_PATH = re.compile(r"^/api/v1/projects/[^/]+/versions/?$")
PREDICTION_FILE_PATH = re.compile(r"^/api/v1/dataplane/[^/]+/predictions/?$")
_NUL_IN_JSON = b"\\u0000"


class InputRefused(HTTPException):
    """Raised while the body streams in (FastAPI passes HTTPExceptions through its body parsing)."""

    def __init__(self, status: int, code: str, message: str, hint: str) -> None:
        super().__init__(status, message)
        self.code = code
        self.message = message
        self.hint = hint


def too_large(limit: int, setting: str, what: str) -> InputRefused:
    return InputRefused(
        413,
        "request_too_large",
        f"the {what} is larger than the control plane accepts ({limit:,} bytes)",
        f"send less (split it up), or ask the operator to raise {setting}",
    )


def nul_refused(where: str) -> InputRefused:
    return InputRefused(
        400,
        "invalid_input",
        f"the request's {where} contains a NUL byte (\\u0000)",
        "remove NUL characters: no name, text or value may contain them",
    )


def _actor(scope: Scope) -> Actor:
    actor = scope.get("state", {}).get("actor")
    if isinstance(actor, Actor):
        return actor
    client = scope.get("client")
    return Actor(name="anonymous", address=client[0] if client else None)


async def audit_refused_input(scope: Scope, platform: Platform, status: int, code: str, message: str) -> None:
    """One audit entry for a request refused for its input (the caller, the route, why)."""
    method = scope.get("method", "-")
    path = scope.get("path", "-").replace("\x00", "\\x00")[:MAX_KEY]
    await run_in_threadpool(
        platform.audit.record_alone,
        _actor(scope),
        "request.refused",
        f"{method} {path}",
        outcome="denied",
        details={"status": status, "code": code, "reason": message[:500]},
    )


class BodyLimitMiddleware:
    """Size limits and NUL checks applied before the application sees a request."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.platform.settings
        path = scope.get("path", "")
        upload = scope.get("method") == "POST" and bool(UPLOAD_PATH.match(path))
        # A replica's prediction-log file: binary (no NUL scan), bounded by the data plane's own file limit.
        prediction_file = scope.get("method") == "POST" and bool(PREDICTION_FILE_PATH.match(path))
        limit, setting, what = (
            (settings.max_upload_bytes, "HARBOURMASTER_MAX_UPLOAD_BYTES", "bundle upload")
            if upload
            else (MAX_PREDICTION_FILE_BYTES, "the data plane's file limit", "prediction-log file")
            if prediction_file
            else (settings.max_request_bytes, "HARBOURMASTER_MAX_REQUEST_BYTES", "request body")
        )
        refusal = self._check_head(scope, limit, setting, what)
        if refusal is not None:
            await self._refuse(scope, send, refusal)
            return
        scan_nul = _is_json(scope) and not prediction_file
        received = 0
        tail = b""

        async def bounded_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise too_large(limit, setting, what)
                if scan_nul:
                    window = tail + chunk
                    if _NUL_IN_JSON in window or b"\x00" in chunk:
                        raise nul_refused("body")
                    tail = window[-(len(_NUL_IN_JSON) - 1) :]
            return message

        await self.app(scope, bounded_receive, send)

    @staticmethod
    def _check_head(scope: Scope, limit: int, setting: str, what: str) -> InputRefused | None:
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            return nul_refused("path or query")
        if b"\x00" in scope.get("query_string", b""):
            return nul_refused("query")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return InputRefused(400, "invalid_input", "Content-Length is not a number", "send a valid header")
                if length > limit:
                    return too_large(limit, setting, what)
        return None

    async def _refuse(self, scope: Scope, send: Send, refusal: InputRefused) -> None:
        from harbourmaster.api.errors import error_response

        await audit_refused_input(scope, self.platform, refusal.status_code, refusal.code, refusal.message)
        response = error_response(refusal.status_code, refusal.code, refusal.message, refusal.hint)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no declared type: FastAPI parses JSON bodies anyway


def install_bounds(app: Any, platform: Platform) -> None:
    app.add_middleware(BodyLimitMiddleware, platform=platform)
