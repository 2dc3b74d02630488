"""Approvals: the sign-offs waiting, approve or reject with a comment (the same service as the API)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from harbourmaster.console.render import render
from harbourmaster.console.session import form_actor, platform_of, session_actor
from harbourmaster.core.limits import MAX_NAME, MAX_TEXT
from harbourmaster.services.actors import Actor

router = APIRouter()
NAV: tuple[str, str] | None = ("Approvals", "/approvals")


@router.get("/approvals")
async def approvals_page(
    request: Request, done: str | None = None, actor: Actor = Depends(session_actor)
) -> HTMLResponse:
    platform = platform_of(request)

    def read() -> tuple[list, list]:
        pending = platform.approvals.pending(actor)
        rows = [
            (
                item,
                platform.approvals.why_not(actor, item.author, item.environment),
                [entry for entry in item.approvals if entry.startswith(f"{actor.name} (")],
            )
            for item in pending
        ]
        recent = platform.approvals.list(actor)[:20]
        return rows, recent

    rows, recent = await run_in_threadpool(read)
    return render(request, "approvals.html", rows=rows, recent=recent, done=done)


@router.post("/approvals/decide")
async def decide(
    request: Request,
    project: str = Form(..., max_length=MAX_NAME),
    version: int = Form(..., ge=1),
    environment: str = Form(..., max_length=MAX_NAME),
    decision: str = Form(..., pattern="^(approve|reject)$"),
    comment: str = Form("", max_length=MAX_TEXT),
    actor: Actor = Depends(form_actor),
) -> Response:
    platform = platform_of(request)
    info = await run_in_threadpool(
        platform.approvals.decide, actor, project, version, environment, decision, comment.strip()
    )
    done = f"{info.decision}d {info.project} v{info.version} for {info.environment}"
    return RedirectResponse("/console/approvals?" + urlencode({"done": done}), status_code=303)
