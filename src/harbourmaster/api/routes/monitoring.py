"""Monitoring routes: drift reports of a deployment and their stored time series, and its SLA figures.
Each calls one service.

A drift report reads the environment's prediction log, so it needs ``read`` on that
environment like the log itself (a prod drift report is a prod read, audited); so does an
SLA read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.drift import DriftReport
from harbourmaster.core.permissions import Permission
from harbourmaster.core.sla import SlaReport
from harbourmaster.services.actors import Actor
from harbourmaster.services.drift import DriftResultInfo
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")
READ_ENVIRONMENT = requires(Permission.READ, environment_param="environment")


class DriftRequest(BaseModel):
    window: str | None = Field(default=None, max_length=100, description="N rows, 30m/6h/1d, or A..B.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Drift settings for this report (see docs/monitoring.md)."
    )
    reference_version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Measure against this version's reference (default: the champion's).",
    )


@router.post("/drift/{project}/{environment}", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
async def drift_report(
    project: str,
    environment: str,
    body: DriftRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DriftReport:
    """Compute and store the drift report of a deployment's window against its champion's reference."""
    return await run_in_threadpool(
        platform.drift.report,
        actor,
        project,
        environment,
        window=body.window,
        options=body.options or None,
        reference_version=body.reference_version,
    )


@router.get("/drift/{project}/{environment}/history", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
def drift_history(
    project: str,
    environment: str,
    feature: str | None = Query(default=None, max_length=255),
    since: datetime | None = None,
    limit: int = Query(default=1000, ge=1, le=10_000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[DriftResultInfo]:
    """Stored drift results of a deployment, newest first (``feature=__dataset__``: the verdicts)."""
    return platform.drift.history(actor, project, environment, feature=feature, since=since, limit=limit)


@router.get("/sla/{project}/{environment}", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
def sla_report(
    project: str,
    environment: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> SlaReport:
    """A deployment's throughput, latency, error and fallback rates over 5m/30m/1h/6h against its
    environment's SLA, with the burn rates and the fast/slow burn alerts' state."""
    return platform.sla.report(actor, project, environment)
