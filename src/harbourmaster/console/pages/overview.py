"""Overview: every project x environment at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console.render import render
from harbourmaster.console.session import platform_of, session_actor
from harbourmaster.services.actors import Actor

router = APIRouter()
NAV: tuple[str, str] | None = ("Overview", "/")


@router.get("/")
async def overview_page(request: Request, actor: Actor = Depends(session_actor)) -> HTMLResponse:
    data = await run_in_threadpool(platform_of(request).overview.overview, actor)
    return render(request, "overview.html", overview=data)
