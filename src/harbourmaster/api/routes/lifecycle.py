"""Lifecycle routes: the labelled production rows a retraining or an evaluation runs on, and the verdict on a
challenger from both versions' predictions. The control plane never scores or trains here (model code runs
in the CLI or job process); it reads the rows and the ground truth, and judges. Each route calls one service.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.permissions import Permission
from harbourmaster.core.retraining import ChallengerReport
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.services.retraining import ChallengeResult, ProductionRows, ScoredRows

router = APIRouter(prefix="/api/v1")


class RowsRequest(BaseModel):
    since: datetime | None = Field(default=None, description="Only rows logged from this time on.")
    last: int | None = Field(default=None, ge=1, description="Only the newest N labelled rows.")


@router.post(
    "/retrain/{project}/{environment}/rows",
    tags=["lifecycle"],
    openapi_extra=requires(Permission.REGISTER),
)
async def retrain_rows(
    project: str,
    environment: str,
    body: RowsRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ProductionRows:
    """The labelled production rows to retrain on (needs ``register``, and ``read`` on the environment;
    audited on a guarded environment)."""
    return await run_in_threadpool(
        platform.retraining.production_rows,
        actor,
        project,
        environment,
        since=body.since,
        last=body.last,
        purpose="retrain",
    )


@router.post(
    "/evaluations/{project}/{environment}/rows",
    tags=["lifecycle"],
    openapi_extra=requires(Permission.READ, environment_param="environment"),
)
async def evaluation_rows(
    project: str,
    environment: str,
    body: RowsRequest,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ProductionRows:
    """The labelled production rows a challenger is evaluated on (audited on a guarded environment)."""
    return await run_in_threadpool(
        platform.retraining.production_rows,
        actor,
        project,
        environment,
        since=body.since,
        last=body.last,
        purpose="evaluate",
    )


@router.post(
    "/evaluations/{project}/{version}/{environment}",
    tags=["lifecycle"],
    openapi_extra=requires(Permission.READ, environment_param="environment"),
)
async def record_challenger(
    project: str,
    version: str,
    environment: str,
    body: ScoredRows,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ChallengeResult:
    """Judge a retrained version against the champion from both versions' predictions on the held-out rows;
    stores the report and the ``beats_champion`` and ``drift_fixed`` evidence."""
    return await run_in_threadpool(platform.retraining.record_challenger, actor, project, version, environment, body)


@router.get("/challenger-reports/{report_id}", tags=["lifecycle"], openapi_extra=requires(Permission.READ))
def challenger_report(
    report_id: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ChallengerReport:
    """A stored challenger report (linked from ``beats_champion`` evidence as ``challenger-report:ID``)."""
    return platform.retraining.report(actor, report_id)
