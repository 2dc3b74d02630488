"""Load-test route: the control plane runs the load test against a replica of the environment (it knows
the replicas' registered addresses and reads production's captured requests) and stores the verdict as
evidence. The call lasts as long as the test (bounded by ``core/loadtest.py``'s limits)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.loadtest import DEFAULT_DURATION, DEFAULT_FLOOR, DEFAULT_HEADROOM, MAX_DURATION, MAX_RATE
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.services.evidence import EvidenceInfo
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")


class LoadTestRequest(BaseModel):
    rate: float | None = Field(default=None, description="Requests per second (default: production peak x headroom).")
    duration: float = Field(default=DEFAULT_DURATION, description=f"Seconds (at most {MAX_DURATION:g}).")
    headroom: float = Field(default=DEFAULT_HEADROOM, description="Factor on production's observed peak rate.")
    floor: float = Field(default=DEFAULT_FLOOR, description=f"Lowest default rate (at most {MAX_RATE:g}).")
    connections: int | None = Field(default=None, description="Connections to the replica (default from the rate).")
    to: str | None = Field(
        default=None, max_length=64, description="Promotion target: its SLA, its evidence (default: the next one)."
    )


@router.post(
    "/loadtest/{project}/{version}/{environment}",
    tags=["lifecycle"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
async def run_load_test(
    project: str,
    version: str,
    environment: str,
    body: LoadTestRequest,
    request: Request,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> EvidenceInfo:
    """Load-test a version serving as champion in an environment; store and return the ``loadtest`` evidence."""
    authorization = request.headers.get("authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    return await run_in_threadpool(
        platform.loadtest.run,
        actor,
        project,
        version,
        environment,
        rate=body.rate,
        duration=body.duration,
        headroom=body.headroom,
        floor=body.floor,
        connections=body.connections,
        to=body.to,
        token=token,  # a guarded environment's replica wants the caller's own predict grant
    )
