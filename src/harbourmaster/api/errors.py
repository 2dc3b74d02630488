"""One JSON error shape for every failure: ``{"error": {"code", "message", "hint"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from harbourmaster.api.bounds import InputRefused, audit_refused_input
from harbourmaster.errors import HarbourmasterError, InvalidInputError, UntrustedContentError, storage_full

log = logging.getLogger("harbourmaster.api")


def error_response(status: int, code: str, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "hint": hint}})


def _describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return 400, "request body is not valid JSON", "send a JSON document"
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{location or 'body'}: {error.get('msg')}")
    return 422, "; ".join(problems), "fix the fields named above (see /docs for the schema)"


async def _refused(request: Request, status: int, code: str, message: str, hint: str | None) -> JSONResponse:
    """A request refused for its input: audited (caller, route, reason), then answered."""
    await audit_refused_input(request.scope, request.app.state.platform, status, code, message)
    return error_response(status, code, message, hint)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HarbourmasterError)
    async def _harbourmaster(request: Request, exc: HarbourmasterError) -> JSONResponse:
        if isinstance(exc, InvalidInputError | UntrustedContentError):
            return await _refused(request, exc.http_status, exc.code, exc.message, exc.hint)
        return error_response(exc.http_status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, hint = _describe_validation(exc)
        return await _refused(request, status, "invalid_json" if status == 400 else "invalid_input", message, hint)

    @app.exception_handler(InputRefused)
    async def _input_refused(request: Request, exc: InputRefused) -> JSONResponse:
        return await _refused(request, exc.status_code, exc.code, exc.message, exc.hint)

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # The database refused a value (a NUL byte on PostgreSQL, an integer beyond 64 bits): bad input, not a fault.
        log.info("unstorable value on %s %s: %s", request.method, request.url.path, exc)
        return await _refused(
            request,
            422,
            "invalid_input",
            "a value in the request cannot be stored (a NUL byte, or a number out of range)",
            "remove NUL characters and keep integers within 64 bits",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = "see /docs for the available endpoints" if exc.status_code in (404, 405) else None
        return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail), hint)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        full = storage_full(exc)
        if full is not None:  # the control plane's disk or database is full: its operator must make room
            log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
            return error_response(
                full.http_status,
                full.code,
                "the control plane's disk is full: what this request was writing was not kept",
                "ask the platform's operator to free space on its disk or database (its log names the file), "
                "then retry",
            )
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}", "see the server log")
