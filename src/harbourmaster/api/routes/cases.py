"""Lifecycle cases: list, show, claim (a worker), record a step (a worker), close (a person). Each route
calls ``CaseService``; the steps themselves run in the worker, which runs the project's code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from harbourmaster.api.bounds import Name
from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.services.cases import DEFAULT_LEASE_SECONDS, LEASE_BOUNDS, CaseInfo
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")
CaseId = PathParam(ge=1, le=2**31 - 1)


class ClaimRequest(BaseModel):
    worker: str | None = Field(default=None, max_length=128, description="The worker's name (default: the caller).")
    lease_seconds: float = Field(
        default=DEFAULT_LEASE_SECONDS,
        ge=LEASE_BOUNDS[0],
        le=LEASE_BOUNDS[1],
        description="How long the claim holds unless renewed (POST /cases/{id}/lease).",
    )


class LeaseRequest(BaseModel):
    claim: int = Field(ge=1, le=2**31 - 1, description="The claim the worker holds (the case's claims count).")
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, ge=LEASE_BOUNDS[0], le=LEASE_BOUNDS[1])


class StepRequest(BaseModel):
    step: str = Field(max_length=32, description="retrain, evaluate, promote, loadtest or approval, in that order.")
    status: str = Field(max_length=16, description="succeeded or failed")
    links: dict[str, Any] = Field(default_factory=dict, description="What the step made: ids, versions, verdicts.")
    error: str | None = Field(default=None, max_length=8000, description="Why a failed step failed.")
    started_at: datetime | None = None
    claim: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The claim the worker holds: refused once reclaimed."
    )


class CloseRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.get("/cases", tags=["cases"], openapi_extra=requires(Permission.READ))
def list_cases(
    project: Name | None = None,
    active: bool = Query(default=False, description="Only cases not over yet."),
    limit: int = Query(default=100, ge=1, le=1000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[CaseInfo]:
    return platform.cases.list(actor, project=project, active=active, limit=limit)


@router.get("/cases/{case_id}", tags=["cases"], openapi_extra=requires(Permission.READ))
def show_case(
    case_id: int = CaseId, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> CaseInfo:
    return platform.cases.get(actor, case_id)


@router.post("/cases/claim", tags=["cases"], openapi_extra=requires(Permission.DEPLOY))
def claim_case(
    body: ClaimRequest, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> CaseInfo | None:
    """The oldest open case (or running case whose lease expired), now running for this worker (null when
    there is none)."""
    return platform.cases.claim(actor, body.worker, lease_seconds=body.lease_seconds)


@router.post("/cases/{case_id}/lease", tags=["cases"], openapi_extra=requires(Permission.DEPLOY))
def renew_case_lease(
    body: LeaseRequest,
    case_id: int = CaseId,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> CaseInfo:
    """Extend the worker's lease on the case it runs (409 when another worker reclaimed it)."""
    return platform.cases.renew(actor, case_id, body.claim, lease_seconds=body.lease_seconds)


@router.post("/cases/{case_id}/steps", tags=["cases"], openapi_extra=requires(Permission.DEPLOY))
def record_case_step(
    body: StepRequest,
    case_id: int = CaseId,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> CaseInfo:
    return platform.cases.record_step(
        actor,
        case_id,
        body.step,
        body.status,
        links=body.links,
        error=body.error,
        started_at=body.started_at,
        claim=body.claim,
    )


@router.post("/cases/{case_id}/close", tags=["cases"], openapi_extra=requires(Permission.DEPLOY))
def close_case(
    body: CloseRequest,
    case_id: int = CaseId,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> CaseInfo:
    return platform.cases.close(actor, case_id, body.reason)
