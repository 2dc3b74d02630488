"""Alerts, notifiers and monitor runs. Each route calls one service, with the roles the services apply:
reading alerts is a read (audited on guarded environments), acknowledging, silencing and triggering a
run need ``deploy`` (on the alert's guarded environment, a deploy grant), notifiers are for admins."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.services.alerts import AlertInfo
from harbourmaster.services.log_maintenance import CompactionInfo, Expired
from harbourmaster.services.monitoring import MonitorRunInfo, RunReport
from harbourmaster.services.notifiers import DeliveryInfo, NotifierInfo
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1")
AlertId = PathParam(ge=1, le=2**31 - 1)


class SilenceRequest(BaseModel):
    seconds: float = Field(gt=0, le=30 * 86_400, description="How long no notification is sent for this alert.")


class NotifierCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    kind: str = Field(max_length=16, description="log, webhook or slack")
    url: str | None = Field(default=None, max_length=2000)
    min_severity: str = Field(default="warning", max_length=16)


@router.get("/alerts", tags=["alerts"], openapi_extra=requires(Permission.READ))
def list_alerts(
    all: bool = Query(default=False, description="Include resolved alerts."),
    limit: int = Query(default=200, ge=1, le=1000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[AlertInfo]:
    return platform.alerts.list(actor, include_resolved=all, limit=limit)


@router.get("/alerts/{alert_id}", tags=["alerts"], openapi_extra=requires(Permission.READ))
def get_alert(
    alert_id: int = AlertId, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> AlertInfo:
    return platform.alerts.get(actor, alert_id)


@router.get("/alerts/{alert_id}/deliveries", tags=["alerts"], openapi_extra=requires(Permission.READ))
def alert_deliveries(
    alert_id: int = AlertId, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[DeliveryInfo]:
    """Where the alert's changes were sent: attempts, status and the last error of each."""
    platform.alerts.get(actor, alert_id)  # a 404 for an unknown alert; the read of a guarded one audited
    return platform.notifiers.deliveries(actor, alert_id)


@router.post("/alerts/{alert_id}/ack", tags=["alerts"], openapi_extra=requires(Permission.DEPLOY))
def acknowledge_alert(
    alert_id: int = AlertId, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> AlertInfo:
    """Someone is on it (audited); needs deploy rights in the alert's environment."""
    return platform.alerts.acknowledge(actor, alert_id)


@router.post("/alerts/{alert_id}/silence", tags=["alerts"], openapi_extra=requires(Permission.DEPLOY))
def silence_alert(
    body: SilenceRequest,
    alert_id: int = AlertId,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> AlertInfo:
    """No notification of this alert for a while (audited); needs deploy rights in its environment."""
    return platform.alerts.silence(actor, alert_id, timedelta(seconds=body.seconds))


@router.post("/monitors/run", tags=["alerts"], openapi_extra=requires(Permission.DEPLOY))
def run_monitors(
    background: BackgroundTasks, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> RunReport:
    """Run every monitor once now (what ``harbourmaster monitor --once --url`` asks); the notifications it
    queued are delivered after the answer, off the request path, and retried by the server's scheduler."""
    report = platform.monitoring.run_once(actor, deliver=False)
    background.add_task(platform.monitoring.deliver_due)
    return report


@router.post(
    "/prediction-log/{environment}/compact",
    tags=["alerts"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def compact_prediction_log(
    environment: str,
    project: str | None = Query(default=None, max_length=64),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> CompactionInfo:
    """Merge the prediction log's small files of every closed hour now (the server does it on its schedule)."""
    return platform.prediction_log.compact(actor, environment, project)


@router.post(
    "/prediction-log/{environment}/retention",
    tags=["alerts"],
    openapi_extra=requires(Permission.DEPLOY, environment_param="environment"),
)
def apply_log_retention(
    environment: str,
    project: str | None = Query(default=None, max_length=64),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[Expired]:
    """Remove the prediction-log days older than each project's retention now (audited)."""
    return platform.prediction_log.apply_retention(actor, environment, project)


@router.get("/monitors/runs", tags=["alerts"], openapi_extra=requires(Permission.READ))
def monitor_runs(
    limit: int = Query(default=50, ge=1, le=1000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[MonitorRunInfo]:
    return platform.monitoring.runs(actor, limit)


@router.get("/notifiers", tags=["alerts"], openapi_extra=requires(Permission.ADMINISTER))
def list_notifiers(
    platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[NotifierInfo]:
    return platform.notifiers.list(actor)


@router.post("/notifiers", status_code=201, tags=["alerts"], openapi_extra=requires(Permission.ADMINISTER))
def add_notifier(
    body: NotifierCreate, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> NotifierInfo:
    """A notifier (the URL is a secret: answers show it masked)."""
    return platform.notifiers.add(actor, body.name, body.kind, body.url, body.min_severity)


@router.delete("/notifiers/{name}", tags=["alerts"], openapi_extra=requires(Permission.ADMINISTER))
def remove_notifier(
    name: str = PathParam(max_length=64),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> NotifierInfo:
    return platform.notifiers.remove(actor, name)
