"""Separation of duties: pending sensitive steps, their confirmation by a second admin, token limits."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.services.duties import DutyDecision, DutyRequestInfo, DutySettings
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1", tags=["identity"])


class ModeUpdate(BaseModel):
    mode: str = Field(max_length=32)


class TokenLimitUpdate(BaseModel):
    max_lifetime_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86_400)


@router.get("/duty-requests", openapi_extra=requires(Permission.ADMINISTER))
def list_requests(
    status: Literal["pending", "confirmed", "rejected", "expired", "all"] = Query("pending"),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[DutyRequestInfo]:
    return platform.duties.list_requests(actor, None if status == "all" else status)


@router.post("/duty-requests/{request_id}/confirm", openapi_extra=requires(Permission.ADMINISTER))
def confirm_request(
    request_id: int, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DutyDecision:
    """Carry out another admin's pending step (never one's own, never one for oneself)."""
    return platform.duties.decide(actor, request_id, confirm=True)


@router.post("/duty-requests/{request_id}/reject", openapi_extra=requires(Permission.ADMINISTER))
def reject_request(
    request_id: int, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DutyDecision:
    return platform.duties.decide(actor, request_id, confirm=False)


@router.get("/duties", openapi_extra=requires(Permission.ADMINISTER))
def duty_settings(platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)) -> DutySettings:
    return platform.duties.view(actor)


@router.put("/duties/mode", openapi_extra=requires(Permission.ADMINISTER))
def set_mode(
    body: ModeUpdate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DutySettings:
    return platform.duties.set_mode(actor, body.mode)


@router.put("/duties/token-limits/{role}", openapi_extra=requires(Permission.ADMINISTER))
def set_token_limit(
    role: str, body: TokenLimitUpdate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DutySettings:
    return platform.duties.set_token_limit(actor, role, body.max_lifetime_seconds)
