"""Page 3, Deployment: traffic split and rollout progress, latency and throughput against the SLA over
time, how requests were answered (by reason), replicas and their heartbeats. The live part is a
fragment htmx polls every few seconds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console import charts
from harbourmaster.console.render import render
from harbourmaster.console.session import platform_of, session_actor
from harbourmaster.services.actors import Actor
from harbourmaster.services.deployment_status import DEFAULT_SPAN, SPANS, DeploymentStatus

router = APIRouter()
NAV: tuple[str, str] | None = ("Deployments", "/deployments")
POLL_SECONDS = 5


@router.get("/deployments", response_class=HTMLResponse)
async def deployments(request: Request, actor: Actor = Depends(session_actor)) -> HTMLResponse:
    """Every deployment, each linking to its page (and to its drift)."""
    states = await run_in_threadpool(platform_of(request).deployments.list, actor)
    return render(request, "deployments.html", states=states)


@router.get("/deployments/{project}/{environment}", response_class=HTMLResponse)
async def deployment(
    request: Request, project: str, environment: str, span: str = DEFAULT_SPAN, actor: Actor = Depends(session_actor)
) -> HTMLResponse:
    status = await run_in_threadpool(
        platform_of(request).deployment_status.status, actor, project, environment, span=span
    )
    return render(request, "deployment.html", **context(status), spans=list(SPANS), poll=POLL_SECONDS)


@router.get("/deployments/{project}/{environment}/live", response_class=HTMLResponse)
async def deployment_live(
    request: Request, project: str, environment: str, span: str = DEFAULT_SPAN, actor: Actor = Depends(session_actor)
) -> HTMLResponse:
    """The live fragment: split, rollout, figures, charts and replicas (the prediction log is not reread)."""
    status = await run_in_threadpool(
        platform_of(request).deployment_status.status, actor, project, environment, span=span, outcomes=False
    )
    return render(request, "deployment_live.html", **context(status), poll=POLL_SECONDS)


def context(status: DeploymentStatus) -> dict[str, Any]:
    """The template's values: the status and the charts' configurations."""
    labels = [charts.clock(point.end) for point in status.points]
    sla = status.sla
    latency = charts.line_chart(
        labels,
        [
            ("p50", [p.p50_ms for p in status.points]),
            ("p95", [p.p95_ms for p in status.points]),
            ("p99", [p.p99_ms for p in status.points]),
        ],
        "latency (ms)",
        limits=[("SLA p99", sla.p99_ms), ("SLA p95", sla.p95_ms)],
    )
    throughput = charts.line_chart(
        labels,
        [("all replicas", [p.throughput for p in status.points])]
        + [(f"replica {r.id[:12]}", r.throughput) for r in status.replicas],
        "requests / s",
        limits=[("SLA minimum", sla.min_rps)],
    )
    rates = charts.line_chart(
        labels,
        [
            ("error rate %", [None if p.error_rate is None else 100 * p.error_rate for p in status.points]),
            ("fallback rate %", [None if p.fallback_rate is None else 100 * p.fallback_rate for p in status.points]),
        ],
        "% of requests",
        limits=[
            ("SLA error rate", None if sla.error_rate is None else 100 * sla.error_rate),
            ("SLA fallback rate", None if sla.fallback_rate is None else 100 * sla.fallback_rate),
        ],
    )
    outcomes = None
    if status.outcomes:
        outcomes = charts.bar_chart(
            [f"{o.path} {o.reason or ''} {o.status}".replace("  ", " ") for o in status.outcomes],
            [o.requests for o in status.outcomes],
            "requests",
            colours=[_outcome_colour(o.kind) for o in status.outcomes],
            horizontal=True,
        )
    return {
        "status": status,
        "now": status.report.window("1h"),
        "chart_latency": latency,
        "chart_throughput": throughput,
        "chart_rates": rates,
        "chart_outcomes": outcomes,
        "outcomes_height": charts.bars_height(len(status.outcomes or [])),
        "labels": labels,
    }


def _outcome_colour(kind: str) -> str:
    return {"answered": "#2b8a3e", "fallback": "#e67700", "error": "#c92a2a", "refused": "#868e96"}.get(kind, "#1f6feb")
