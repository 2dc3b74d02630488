"""Progressive rollouts: list, show, pause, resume, abort (each route calls ``RolloutService``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from harbourmaster.api.bounds import Name
from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.services.rollouts import RolloutInfo

router = APIRouter(prefix="/api/v1")
RolloutId = PathParam(ge=1, le=2**31 - 1)


class RolloutChange(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


@router.get("/rollouts", tags=["rollouts"], openapi_extra=requires(Permission.READ))
def list_rollouts(
    project: Name | None = None,
    active: bool = Query(default=False, description="Only running or paused rollouts."),
    limit: int = Query(default=50, ge=1, le=1000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[RolloutInfo]:
    return platform.rollouts.list(actor, project, active=active, limit=limit)


@router.get("/rollouts/{rollout_id}", tags=["rollouts"], openapi_extra=requires(Permission.READ))
def show_rollout(
    rollout_id: int = RolloutId, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> RolloutInfo:
    return platform.rollouts.get(actor, rollout_id)


@router.post("/rollouts/{rollout_id}/{action}", tags=["rollouts"], openapi_extra=requires(Permission.DEPLOY))
def change_rollout(
    body: RolloutChange,
    action: str = PathParam(pattern="^(pause|resume|abort)$"),
    rollout_id: int = RolloutId,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> RolloutInfo:
    method = {"pause": platform.rollouts.pause, "resume": platform.rollouts.resume, "abort": platform.rollouts.abort}
    return method[action](actor, rollout_id, body.reason)
