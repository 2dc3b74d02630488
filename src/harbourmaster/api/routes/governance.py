"""Environments, deployments, promotions, approvals, history, users, tokens and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from harbourmaster.api.bounds import Key, Name, VersionRef
from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import AUTHENTICATED, requires
from harbourmaster.core.environments import Environment
from harbourmaster.core.limits import MAX_INT
from harbourmaster.core.permissions import Permission
from harbourmaster.schemas import (
    ApprovalInfo,
    DeploymentEvent,
    DeploymentState,
    GateResult,
    HistoryEntry,
    PendingApproval,
    PromotionInfo,
)
from harbourmaster.services.actors import Actor
from harbourmaster.services.identity import TokenInfo, UserInfo
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")


# -- wire types for requests ------------------------------------------------------


class EnvironmentUpdate(BaseModel):
    config: dict[str, Any]
    position: int | None = Field(default=None, ge=0, le=10_000)


class DeployRequest(BaseModel):
    version: VersionRef
    options: dict[str, Any] | None = None  # merged into the current serving options, in the same change


class RollbackRequest(BaseModel):
    to_version: VersionRef | None = None


class ChallengerRequest(BaseModel):
    version: VersionRef
    mode: Name = "canary"
    weight: float = 10.0
    sticky_key: Key | None = None


class FallbackRequest(BaseModel):
    failover: VersionRef | None = None
    fallback: dict[str, Any] = Field(default_factory=dict)  # merged key by key into the current chain
    clear_failover: bool = False
    replace: bool = False  # start from an empty chain instead of merging


class OptionsRequest(BaseModel):
    options: dict[str, Any]


class RolloutRequest(BaseModel):
    """How a promotion rolls out (``core.rollout_rules.rollout_plan`` checks it)."""

    strategy: str = Field(default="immediate", max_length=16)
    steps: list[float] | None = Field(default=None, max_length=20)
    bake: str | float | None = None
    shadow_for: str | float | None = None
    sticky_key: str | None = Field(default=None, max_length=128)
    decide: str = Field(default="auto", max_length=16)
    min_requests: int | None = Field(default=None, ge=1, le=10_000_000)


class PromoteRequest(BaseModel):
    project: Name
    version: VersionRef
    to: Name
    challenger: ChallengerRequest | None = None
    rollout: RolloutRequest | None = None


class DecisionRequest(BaseModel):
    project: Name
    version: VersionRef
    environment: Name
    decision: Name = "approve"
    comment: str = Field(default="", max_length=4000)


class UserCreate(BaseModel):
    name: Name
    roles: list[Name] = Field(max_length=32)


class RolesUpdate(BaseModel):
    roles: list[Name] = Field(max_length=32)


class GrantRequest(BaseModel):
    environment: Name
    permission: Name


class DisabledUpdate(BaseModel):
    disabled: bool


class TokenCreate(BaseModel):
    user: Name | None = None
    name: Name = "default"
    expires_in_days: float | None = Field(default=None, gt=0, le=36_600)


class IssuedTokenOut(BaseModel):
    id: int
    user: str
    name: str
    token: str
    expires_at: datetime | None


class WhoAmI(BaseModel):
    name: str
    roles: list[str]
    grants: list[str]


class ChainReportOut(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None
    problems: list[str] = []
    anchored_seq: int | None = None
    signed: bool = False


# -- environments and deployments -----------------------------------------------------


@router.get("/environments", tags=["environments"], openapi_extra=requires(Permission.READ))
def list_environments(
    platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[Environment]:
    platform.access.require(actor, Permission.READ)
    return platform.environments.list()


@router.put(
    "/environments/{environment}",
    tags=["environments"],
    openapi_extra=requires(Permission.ADMINISTER, environment_param="environment"),
)
def configure_environment(
    environment: str,
    body: EnvironmentUpdate,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> Environment:
    return platform.environments.configure(actor, environment, body.config, body.position)


@router.get("/deployments", tags=["deployments"], openapi_extra=requires(Permission.READ))
def list_deployments(
    environment: str | None = None,
    project: str | None = None,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[DeploymentState]:
    return platform.deployments.list(actor, environment, project)


# Declared before /deployments/{project}/{environment}, which would otherwise capture 'events'.
@router.get("/deployments/{project}/events", tags=["deployments"], openapi_extra=requires(Permission.READ))
def deployment_events(
    project: str,
    environment: str | None = None,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[DeploymentEvent]:
    return platform.deployments.history(actor, project, environment)


@router.get(
    "/deployments/{project}/{environment}",
    tags=["deployments"],
    openapi_extra=requires(Permission.READ, environment_param="environment"),
)
def get_deployment(
    project: str, environment: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DeploymentState:
    return platform.deployments.get(actor, project, environment)


@router.post(
    "/deployments/{project}/{environment}",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def deploy(
    project: str,
    environment: str,
    body: DeployRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DeploymentState:
    return platform.deployments.deploy(actor, project, body.version, environment, options=body.options)


@router.post(
    "/deployments/{project}/{environment}/rollback",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def rollback(
    project: str,
    environment: str,
    body: RollbackRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DeploymentState:
    return platform.deployments.rollback(actor, project, environment, body.to_version)


@router.put(
    "/deployments/{project}/{environment}/challenger",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def set_challenger(
    project: str,
    environment: str,
    body: ChallengerRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DeploymentState:
    return platform.deployments.set_challenger(
        actor, project, environment, body.version, mode=body.mode, weight=body.weight, sticky_key=body.sticky_key
    )


@router.delete(
    "/deployments/{project}/{environment}/challenger",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def clear_challenger(
    project: str, environment: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> DeploymentState:
    return platform.deployments.clear_challenger(actor, project, environment)


@router.put(
    "/deployments/{project}/{environment}/fallback",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def set_fallback(
    project: str,
    environment: str,
    body: FallbackRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DeploymentState:
    return platform.deployments.set_fallback(
        actor,
        project,
        environment,
        failover=body.failover,
        fallback=body.fallback,
        clear_failover=body.clear_failover,
        replace=body.replace,
    )


@router.put(
    "/deployments/{project}/{environment}/options",
    tags=["deployments"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def set_options(
    project: str,
    environment: str,
    body: OptionsRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> DeploymentState:
    return platform.deployments.set_options(actor, project, environment, body.options)


@router.get("/projects/{project}/history", tags=["governance"], openapi_extra=requires(Permission.READ))
def project_history(
    project: str,
    environment: str | None = None,
    at: datetime | None = None,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[HistoryEntry]:
    return platform.history.history(actor, project, environment, at)


# -- promotions and approvals --------------------------------------------------------


@router.post("/promotions", tags=["governance"], openapi_extra=requires(Permission.DEPLOY, environment_param="body.to"))
def promote(
    body: PromoteRequest, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> PromotionInfo:
    from harbourmaster.core.rollout_rules import rollout_plan

    challenger = body.challenger.model_dump(exclude={"version"}) if body.challenger else None
    rollout = rollout_plan(**body.rollout.model_dump()) if body.rollout else None
    return platform.promotions.promote(
        actor, body.project, body.version, body.to, challenger=challenger, rollout=rollout
    )


@router.get("/promotions", tags=["governance"], openapi_extra=requires(Permission.READ))
def list_promotions(
    project: str | None = None, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[PromotionInfo]:
    return platform.promotions.list(actor, project)


@router.get("/promotions/check", tags=["governance"], openapi_extra=requires(Permission.READ))
def check_promotion(
    project: str,
    version: str,
    to: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[GateResult]:
    return platform.promotions.check(actor, project, version, to)


@router.post("/approvals", tags=["governance"], openapi_extra=requires(Permission.APPROVE))
def decide(
    body: DecisionRequest, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> ApprovalInfo:
    return platform.approvals.decide(actor, body.project, body.version, body.environment, body.decision, body.comment)


@router.get("/approvals", tags=["governance"], openapi_extra=requires(Permission.READ))
def list_approvals(
    project: str | None = None, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[ApprovalInfo]:
    return platform.approvals.list(actor, project)


@router.get("/approvals/pending", tags=["governance"], openapi_extra=requires(Permission.READ))
def pending_approvals(
    project: str | None = None, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[PendingApproval]:
    return platform.approvals.pending(actor, project)


# -- identity ------------------------------------------------------------------------


@router.get("/whoami", tags=["identity"], openapi_extra=requires(AUTHENTICATED))
def whoami(actor: Actor = Depends(current_actor)) -> WhoAmI:
    return WhoAmI(name=actor.name, roles=sorted(actor.roles), grants=sorted(f"{e}:{p}" for e, p in actor.grants))


@router.get("/users", tags=["identity"], openapi_extra=requires(Permission.ADMINISTER))
def list_users(platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)) -> list[UserInfo]:
    return platform.identity.list_users(actor)


@router.post("/users", status_code=201, tags=["identity"], openapi_extra=requires(Permission.ADMINISTER))
def create_user(
    body: UserCreate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> UserInfo:
    return platform.identity.create_user(actor, body.name, body.roles)


@router.put("/users/{name}/roles", tags=["identity"], openapi_extra=requires(Permission.ADMINISTER))
def set_roles(
    name: str, body: RolesUpdate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> UserInfo:
    return platform.identity.set_roles(actor, name, body.roles)


@router.put("/users/{name}/disabled", tags=["identity"], openapi_extra=requires(Permission.ADMINISTER))
def set_disabled(
    name: str, body: DisabledUpdate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> UserInfo:
    return platform.identity.set_disabled(actor, name, body.disabled)


@router.post("/users/{name}/grants", tags=["identity"], openapi_extra=requires(Permission.ADMINISTER))
def add_grant(
    name: str, body: GrantRequest, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> UserInfo:
    return platform.identity.grant(actor, name, body.environment, body.permission)


@router.delete(
    "/users/{name}/grants/{environment}/{permission}",
    tags=["identity"],
    openapi_extra=requires(Permission.ADMINISTER),
)
def remove_grant(
    name: str,
    environment: str,
    permission: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> UserInfo:
    return platform.identity.revoke_grant(actor, name, environment, permission)


@router.post("/tokens", status_code=201, tags=["identity"], openapi_extra=requires(AUTHENTICATED))
def create_token(
    body: TokenCreate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> IssuedTokenOut:
    """A new token for yourself (or, for admins, for anyone); the token is shown only in this answer."""
    lifetime = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = platform.identity.create_token(actor, body.user or actor.name, body.name, lifetime)
    return IssuedTokenOut(
        id=issued.id, user=issued.user, name=issued.name, token=issued.secret, expires_at=issued.expires_at
    )


@router.get("/tokens", tags=["identity"], openapi_extra=requires(AUTHENTICATED))
def list_tokens(
    user: str | None = None, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[TokenInfo]:
    return platform.identity.list_tokens(actor, user or actor.name)


@router.delete("/tokens/{token_id}", tags=["identity"], openapi_extra=requires(AUTHENTICATED))
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_INT)],
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> TokenInfo:
    return platform.identity.revoke_token(actor, token_id)


# -- audit log -------------------------------------------------------------------------


@router.get("/audit/verify", tags=["audit"], openapi_extra=requires(Permission.AUDIT))
def verify_audit(platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)) -> ChainReportOut:
    report = platform.audit.verify(actor)
    return ChainReportOut(**report.__dict__)


@router.get("/audit/public-key", tags=["audit"], openapi_extra=requires(Permission.AUDIT))
def audit_public_key(
    platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> PlainTextResponse:
    """The PEM public key that verifies audit entries, anchors and exports offline."""
    return PlainTextResponse(platform.audit.public_key_pem(actor), media_type="application/x-pem-file")


@router.get("/audit/events", tags=["audit"], openapi_extra=requires(Permission.AUDIT))
def audit_events(
    since: datetime | None = None,
    limit: int = Query(default=100, ge=1, le=10_000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[dict[str, Any]]:
    return platform.audit.entries(actor, since, limit)


@router.get("/audit/export", tags=["audit"], openapi_extra=requires(Permission.AUDIT))
def export_audit(
    since: datetime | None = None,
    format: str = "jsonl",
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> PlainTextResponse:
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return PlainTextResponse(platform.audit.export(actor, since, format), media_type=media)
