"""Page 5, Runs: pipeline runs (training, retraining, batch scoring ...) with status, timings, row
counts, validation verdicts and errors, filterable and paginated; a run's page shows its steps,
its validation findings and its whole error."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console import charts
from harbourmaster.console.render import render
from harbourmaster.console.session import platform_of, session_actor
from harbourmaster.schemas import RunInfo
from harbourmaster.services.actors import Actor

router = APIRouter()
NAV: tuple[str, str] | None = ("Runs", "/runs")
PAGE_SIZE = 50
STATUSES = ("running", "succeeded", "failed")


@router.get("/runs", response_class=HTMLResponse)
async def runs(
    request: Request,
    project: str | None = Query(None, max_length=64),
    status: str | None = Query(None, max_length=16),
    kind: str | None = Query(None, max_length=32),
    environment: str | None = Query(None, max_length=64),
    before: int | None = Query(None, ge=1),
    actor: Actor = Depends(session_actor),
) -> HTMLResponse:
    filters = {"project": project or None, "status": status or None, "kind": kind or None}
    filters["environment"] = environment or None
    page = await run_in_threadpool(
        lambda: platform_of(request).runs.page(actor, **filters, before=before, limit=PAGE_SIZE)
    )
    kept = {key: value for key, value in filters.items() if value}
    return render(
        request,
        "runs.html",
        page=page,
        filters=kept,
        statuses=STATUSES,
        before=before,
        chart_runs=_runs_chart(page.runs),
        query=_query(kept),
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(request: Request, run_id: int, actor: Actor = Depends(session_actor)) -> HTMLResponse:
    found = await run_in_threadpool(platform_of(request).runs.get, actor, run_id)
    return render(
        request,
        "run.html",
        run=found,
        chart_steps=_steps_chart(found) if found.steps else None,
        steps_height=charts.bars_height(len(found.steps)),
    )


def _runs_chart(runs: list[RunInfo]) -> dict[str, Any] | None:
    """Each run's duration, oldest left, coloured by status."""
    timed = [r for r in reversed(runs) if r.duration_seconds is not None]
    if not timed:
        return None
    return charts.bar_chart(
        [f"#{r.id}" for r in timed],
        [round(r.duration_seconds or 0.0, 3) for r in timed],
        "seconds",
        colours=[charts.STATUS_COLOURS.get(r.status, "#868e96") for r in timed],
    )


def _steps_chart(run: RunInfo) -> dict[str, Any]:
    """Each step's duration (horizontal bars, in order)."""
    return charts.bar_chart(
        [step.name for step in run.steps],
        [round(step.duration_seconds, 3) for step in run.steps],
        "seconds",
        colours=[charts.STATUS_COLOURS.get(step.status, "#868e96") for step in run.steps],
        horizontal=True,
    )


def _query(filters: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(filters)
