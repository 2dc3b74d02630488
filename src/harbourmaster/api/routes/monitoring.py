"""Monitoring routes: drift and quality reports of a deployment and their stored series, its SLA
figures, and the evidence of promotion gates. Each calls one service.

A drift or quality report reads the environment's prediction log, so it needs ``read`` on that
environment like the log itself (a prod drift report is a prod read, audited); so does an SLA read,
and recording evidence for promotion into an environment (it measures that environment's window).
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
from harbourmaster.core.quality import QualityReport
from harbourmaster.core.sla import SlaReport
from harbourmaster.services.actors import Actor
from harbourmaster.services.drift import DriftResultInfo
from harbourmaster.services.evidence import CHECKS, EvidenceInfo
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


class QualityRequest(BaseModel):
    window: str | None = Field(default=None, max_length=100, description="N rows, 30m/6h/1d, or A..B.")
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The rows this version answered (default: the champion)."
    )


@router.post("/quality/{project}/{environment}", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
async def quality_report(
    project: str,
    environment: str,
    body: QualityRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> QualityReport:
    """Compute and store the model quality of a deployment's window against its held-out metrics."""
    return await run_in_threadpool(
        platform.quality.report, actor, project, environment, window=body.window, version=body.version
    )


@router.get("/quality/{project}/{environment}/history", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
def quality_history(
    project: str,
    environment: str,
    limit: int = Query(default=100, ge=1, le=10_000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[QualityReport]:
    """Stored quality reports of a deployment, newest first."""
    return platform.quality.history(actor, project, environment, limit=limit)


class EvidenceRequest(BaseModel):
    checks: list[str] | None = Field(default=None, max_length=len(CHECKS), description=f"Of {', '.join(CHECKS)}.")
    window: str | None = Field(default=None, max_length=100, description="N rows, 30m/6h/1d, or A..B.")


@router.post("/evidence/{project}/{version}/{environment}", tags=["monitoring"], openapi_extra=READ_ENVIRONMENT)
async def record_evidence(
    project: str,
    version: str,
    environment: str,
    body: EvidenceRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[EvidenceInfo]:
    """Compute and store evidence about a version for promotion into an environment (drift, quality)."""
    return await run_in_threadpool(
        platform.evidence.record, actor, project, version, environment, checks=body.checks, window=body.window
    )


@router.get("/evidence/{project}", tags=["monitoring"], openapi_extra=requires(Permission.READ))
def list_evidence(
    project: str,
    version: str | None = Query(default=None, max_length=64),
    environment: str | None = Query(default=None, max_length=64),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[EvidenceInfo]:
    """Stored evidence of a project (of one version, for one environment), newest first."""
    return platform.evidence.list(actor, project, version=version, environment=environment)


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
