"""The data plane's routes (replica credentials only) and the people's views of it. Each route calls one service.

``/api/v1/dataplane/{environment}/...`` answers only a replica credential of that
environment: desired state, deployed bundles, heartbeats, prediction-log files,
token checks, feedback and scoring runs. ``/replica-credentials`` is for admins;
``/replicas`` and ``/predictions`` let people read heartbeats and the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.deps import current_actor, get_platform, replica_actor
from harbourmaster.api.permissions import REPLICA, requires
from harbourmaster.api.routes.registry import _checked_digest
from harbourmaster.core.permissions import Permission
from harbourmaster.core.run_checks import ValidationReport
from harbourmaster.core.run_steps import RunStep
from harbourmaster.errors import InvalidInputError, NotFoundError
from harbourmaster.schemas import ReplicaInfo, RunInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import (
    MAX_PREDICTION_FILE_BYTES,
    MAX_REFUSAL_TALLIES,
    DesiredState,
    ReplicaCredentialInfo,
    TokenDecision,
)
from harbourmaster.services.feedback import parse_feedback
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")
DATA_PLANE = requires(REPLICA, environment_param="environment")


class HeartbeatIn(BaseModel):
    replica: str = Field(min_length=1, max_length=64)
    host: str = Field(max_length=255)
    pid: int = Field(ge=0, le=2**31 - 1)
    address: str = Field(default="", max_length=255)
    status: str = Field(default="alive", pattern="^(starting|alive|stopped)$")
    loaded: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)


class TokenCheck(BaseModel):
    token: str = Field(default="", max_length=512)
    address: str | None = Field(default=None, max_length=255)


class StoredOut(BaseModel):
    stored: int


class ScoreRunIn(BaseModel):
    project: str = Field(max_length=64)
    version: int = Field(ge=1, le=2**31 - 1)
    status: str = Field(pattern="^(succeeded|failed)$")
    rows_in: int | None = Field(default=None, ge=0, le=2**31 - 1)
    rows_out: int | None = Field(default=None, ge=0, le=2**31 - 1)
    input: str = Field(default="", max_length=1000)
    output: str = Field(default="", max_length=1000)
    error: str | None = Field(default=None, max_length=10_000)
    started_at: datetime | None = None
    steps: list[RunStep] = Field(default_factory=list, max_length=50)
    validation_report: ValidationReport | None = None


class CredentialCreate(BaseModel):
    environment: str = Field(max_length=64)
    name: str = Field(default="replica", max_length=128)
    expires_in_days: float | None = Field(default=None, gt=0, le=36_500)


class IssuedCredentialOut(BaseModel):
    id: int
    environment: str
    name: str
    token: str
    expires_at: datetime | None


# -- the data plane (replica credentials) ---------------------------------------------


@router.get("/dataplane/{environment}/state", tags=["data plane"], openapi_extra=DATA_PLANE)
def desired_state(
    environment: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(replica_actor)
) -> DesiredState:
    """The environment's configuration and every deployment in it (what replicas reconcile toward)."""
    return platform.dataplane.desired_state(actor, environment)


@router.get("/dataplane/{environment}/bundles/{digest}/manifest", tags=["data plane"], openapi_extra=DATA_PLANE)
def bundle_manifest(
    environment: str, digest: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(replica_actor)
) -> Response:
    bundle = platform.dataplane.bundle(actor, environment, _checked_digest(digest))
    return Response(bundle.manifest.model_dump_json(), media_type="application/json")


@router.get(
    "/dataplane/{environment}/bundles/{digest}/files/{path:path}", tags=["data plane"], openapi_extra=DATA_PLANE
)
def bundle_file(
    environment: str,
    digest: str,
    path: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> Response:
    """One file of a deployed bundle, served only after the whole bundle verified against its digest."""
    bundle = platform.dataplane.bundle(actor, environment, _checked_digest(digest))
    if path not in bundle.files:
        raise NotFoundError(f"bundle {digest[:12]} has no file {path}", "see its manifest")
    return Response(bundle.files[path], media_type="application/octet-stream")


@router.post("/dataplane/{environment}/heartbeats", status_code=204, tags=["data plane"], openapi_extra=DATA_PLANE)
def heartbeat(
    environment: str,
    body: HeartbeatIn,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> Response:
    platform.dataplane.heartbeat(
        actor,
        environment,
        body.replica,
        host=body.host,
        pid=body.pid,
        address=body.address,
        status=body.status,
        loaded=body.loaded,
        details=body.details,
    )
    return Response(status_code=204)


@router.post(
    "/dataplane/{environment}/predictions",
    status_code=201,
    tags=["data plane"],
    openapi_extra={
        **DATA_PLANE,
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    },
)
async def upload_predictions(
    environment: str,
    request: Request,
    key: str = Query(max_length=300, description="predictions/env=<env>/project=<p>/date=<d>/<hex>.parquet"),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> dict[str, str]:
    """One Parquet file captured by a replica, written into the prediction log under its environment."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_PREDICTION_FILE_BYTES:
        raise InvalidInputError(f"a prediction file of {length} bytes is too large", "flush smaller files")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PREDICTION_FILE_BYTES:
            raise InvalidInputError("the prediction file is too large", f"at most {MAX_PREDICTION_FILE_BYTES} bytes")
        chunks.append(chunk)
    stored = await run_in_threadpool(platform.dataplane.store_predictions, actor, environment, key, b"".join(chunks))
    return {"key": stored}


@router.post("/dataplane/{environment}/authorize", tags=["data plane"], openapi_extra=DATA_PLANE)
def authorize_prediction(
    environment: str,
    body: TokenCheck,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> TokenDecision:
    """May this client token predict in the (guarded) environment? The decision (a refusal is still a 200)."""
    return platform.dataplane.authorize_prediction(actor, environment, body.token or None, body.address)


@router.post("/dataplane/{environment}/feedback/{project}", tags=["data plane"], openapi_extra=DATA_PLANE)
def forward_feedback(
    environment: str,
    project: str,
    body: dict[str, Any],
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> StoredOut:
    items = parse_feedback(body)
    caller = body.get("caller") if isinstance(body.get("caller"), str) else None
    classes = body.get("classes") if isinstance(body.get("classes"), list) else None
    raw = body.get("answered")
    answered = (
        {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1_000_000}
        if isinstance(raw, dict)
        else {}
    )
    stored = platform.dataplane.feedback(actor, environment, project, items, caller, classes=classes, answered=answered)
    return StoredOut(stored=stored)


class RefusalsIn(BaseModel):
    refusals: list[dict[str, Any]] = Field(max_length=MAX_REFUSAL_TALLIES)


@router.post("/dataplane/{environment}/refusals", tags=["data plane"], openapi_extra=DATA_PLANE)
def record_refusals(
    environment: str,
    body: RefusalsIn,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> StoredOut:
    """A guarded replica's refused client tokens, aggregated per token hash and reason per interval."""
    return StoredOut(stored=platform.dataplane.record_refusals(actor, environment, body.refusals))


@router.post("/dataplane/{environment}/runs", status_code=201, tags=["data plane"], openapi_extra=DATA_PLANE)
def record_score_run(
    environment: str,
    body: ScoreRunIn,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(replica_actor),
) -> RunInfo:
    """A batch-scoring run done by a data-plane scorer (``harbourmaster score --url``)."""
    outcome = body.model_dump(exclude={"project"})
    return platform.dataplane.record_score_run(actor, environment, body.project, outcome)


# -- credentials (admins) and views (people) ---------------------------------------------


@router.post(
    "/replica-credentials", status_code=201, tags=["data plane"], openapi_extra=requires(Permission.ADMINISTER)
)
def create_credential(
    body: CredentialCreate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> IssuedCredentialOut:
    """A replica credential for one environment; the token is shown only in this answer."""
    lifetime = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = platform.dataplane.create_credential(actor, body.environment, body.name, lifetime)
    return IssuedCredentialOut(
        id=issued.id,
        environment=issued.environment,
        name=issued.name,
        token=issued.secret,
        expires_at=issued.expires_at,
    )


@router.get("/replica-credentials", tags=["data plane"], openapi_extra=requires(Permission.ADMINISTER))
def list_credentials(
    environment: str | None = None, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[ReplicaCredentialInfo]:
    return platform.dataplane.list_credentials(actor, environment)


@router.delete(
    "/replica-credentials/{credential_id}", tags=["data plane"], openapi_extra=requires(Permission.ADMINISTER)
)
def revoke_credential(
    credential_id: int = PathParam(ge=1, le=2**31 - 1),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ReplicaCredentialInfo:
    return platform.dataplane.revoke_credential(actor, credential_id)


@router.get("/replicas", tags=["data plane"], openapi_extra=requires(Permission.READ))
def list_replicas(
    environment: str | None = None,
    include_stopped: bool = False,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[ReplicaInfo]:
    return platform.replicas.list(actor, environment, include_stopped=include_stopped)


@router.get(
    "/predictions/{project}/{environment}",
    tags=["data plane"],
    openapi_extra=requires(Permission.READ, environment_param="environment"),
)
def recent_predictions(
    project: str,
    environment: str,
    limit: int = Query(default=20, ge=1, le=10_000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> dict[str, Any]:
    """The newest rows of a project's prediction log and the total count (no SQL runs on the control plane)."""
    return platform.replicas.predictions(actor, project, environment, limit)
