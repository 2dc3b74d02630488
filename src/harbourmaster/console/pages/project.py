"""Project: versions with metrics, schema and lineage; a diff of two versions; environment history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console.paging import page_window, pager
from harbourmaster.console.render import render
from harbourmaster.console.session import platform_of, session_actor
from harbourmaster.core.limits import MAX_NAME
from harbourmaster.services.actors import Actor

router = APIRouter()
NAV: tuple[str, str] | None = ("Projects", "/projects")
HISTORY_PAGE = 20


@router.get("/projects")
async def projects_page(request: Request, actor: Actor = Depends(session_actor)) -> HTMLResponse:
    projects = await run_in_threadpool(platform_of(request).registry.list_projects, actor)
    return render(request, "projects.html", projects=projects)


@router.get("/projects/{name}")
async def project_page(
    request: Request,
    name: str,
    version: int | None = Query(None, ge=1),
    old: int | None = Query(None, ge=1),
    new: int | None = Query(None, ge=1),
    environment: str | None = Query(None, max_length=MAX_NAME),
    offset: int | None = Query(None, ge=0, le=10_000_000),
    history_offset: int | None = Query(None, ge=0, le=10_000_000),
    actor: Actor = Depends(session_actor),
) -> HTMLResponse:
    platform = platform_of(request)
    start, size = page_window(offset, None)
    history_start = max(0, history_offset or 0)

    def read() -> dict[str, Any]:
        project = platform.registry.get_project(actor, name)
        versions, total = platform.registry.page_versions(actor, name, start, size)
        shown = version or (project.latest_version if project.latest_version else None)
        detail = platform.registry.get_version(actor, name, shown) if shown else None
        diff = platform.registry.diff_versions(actor, name, old, new) if old and new else None
        history = platform.history.history(actor, name, environment or None)
        deployments = platform.deployments.list(actor, project=name)
        return {
            "project": project,
            "versions": versions,
            "versions_pager": pager(request, start, size, len(versions), total, start + len(versions) < total),
            "detail": detail,
            "diff": diff,
            "old": old or (max(1, detail.number - 1) if detail else None),
            "new": new or (detail.number if detail else None),
            "history": history[history_start : history_start + HISTORY_PAGE],
            "history_pager": pager(
                request,
                history_start,
                HISTORY_PAGE,
                len(history[history_start : history_start + HISTORY_PAGE]),
                len(history),
                history_start + HISTORY_PAGE < len(history),
                param="history_offset",
            ),
            "environment": environment or "",
            "environments": [env.name for env in platform.environments.list()],
            "deployments": deployments,
        }

    return render(request, "project.html", **(await run_in_threadpool(read)))
