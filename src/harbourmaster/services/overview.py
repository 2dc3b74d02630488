"""The console's overview: every project x environment at a glance, read in a few queries.

Deployments, the latest monitor results (SLA, fallback rate), the latest drift verdict, live replicas,
firing alerts and the sign-offs waiting for the reader, joined per (project, environment).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from harbourmaster.core.permissions import Permission
from harbourmaster.schemas import ChallengerState, DeploymentState, PendingApproval, VersionPointer
from harbourmaster.services.actors import Actor
from harbourmaster.services.rollouts import RolloutService, rollout_stage
from harbourmaster.store.tables import AlertRow, DriftResultRow, MonitorResultRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

STATUS_ORDER = {"ok": 0, "warning": 1, "critical": 2}


class OverviewCell(BaseModel):
    """One project in one environment."""

    project: str
    environment: str
    champion: VersionPointer | None = None
    challenger: ChallengerState | None = None
    rollout: str | None = None  # the active rollout in a few words (services/rollouts.rollout_stage)
    sla_status: str | None = None  # worst of the latest SLA results; None: never measured
    sla_summary: str = ""
    fallback_rate: float | None = None
    drift_status: str | None = None  # "drifted" | "ok" | "no data" (empty window) | None (never measured)
    drift_summary: str = ""
    drift_at: datetime | None = None
    open_alerts: int = 0
    waiting_for_me: int = 0
    updated_by: str = ""
    updated_at: datetime | None = None


class EnvironmentHealth(BaseModel):
    name: str
    guarded: bool
    replicas_alive: int = 0
    replicas_total: int = 0


class Overview(BaseModel):
    environments: list[EnvironmentHealth]
    cells: list[OverviewCell]
    projects: list[str]
    open_alerts: int = 0
    waiting_for_me: list[PendingApproval] = Field(default_factory=list)


class OverviewService:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def overview(self, actor: Actor) -> Overview:
        """Everything the overview page shows, as ``actor`` may read it (guarded reads are audited)."""
        platform = self._platform
        platform.access.require(actor, Permission.READ, target="overview")
        environments = platform.environments.list()
        projects = [p.name for p in platform.registry.list_projects(actor)]
        states = {(s.project, s.environment): s for s in platform.deployments.list(actor)}
        replicas = platform.replicas.list(actor, include_stopped=True)
        mine = self.waiting_for(actor)
        with platform.db.reader() as session:
            latest_sla = session.execute(
                select(MonitorResultRow).where(
                    MonitorResultRow.id.in_(
                        select(func.max(MonitorResultRow.id))
                        .where(MonitorResultRow.monitor == "sla", MonitorResultRow.project.is_not(None))
                        .group_by(MonitorResultRow.project, MonitorResultRow.environment, MonitorResultRow.metric)
                    )
                )
            ).scalars()
            sla: dict[tuple[str, str], list[MonitorResultRow]] = {}
            for row in latest_sla:
                sla.setdefault((row.project or "", row.environment or ""), []).append(row)
            drift = {
                (row.project, row.environment): row
                for row in session.scalars(
                    select(DriftResultRow).where(
                        DriftResultRow.id.in_(
                            select(func.max(DriftResultRow.id))
                            .where(DriftResultRow.kind == "dataset")
                            .group_by(DriftResultRow.project, DriftResultRow.environment)
                        )
                    )
                )
            }
            alerts = Counter(
                (project, environment)
                for project, environment in session.execute(
                    select(AlertRow.project, AlertRow.environment).where(AlertRow.status == "firing")
                )
            )
            rollouts = RolloutService.active_in(session)
        waiting = Counter((item.project, item.environment) for item in mine)
        cells = []
        for project in projects:
            for env in environments:
                key = (project, env.name)
                state: DeploymentState | None = states.get(key)
                results = sla.get(key, [])
                worst = max(results, key=lambda r: STATUS_ORDER.get(r.status, 0), default=None)
                fallback = next((r.value for r in results if r.metric == "fallback-rate"), None)
                drifted = drift.get(key)
                cells.append(
                    OverviewCell(
                        project=project,
                        environment=env.name,
                        champion=state.champion if state else None,
                        challenger=state.challenger if state else None,
                        rollout=rollout_stage(rollouts[key]) if key in rollouts else None,
                        sla_status=worst.status if worst else None,
                        sla_summary=worst.summary if worst and worst.status != "ok" else "",
                        fallback_rate=fallback,
                        drift_status=_drift_status(drifted),
                        drift_summary=_drift_summary(drifted),
                        drift_at=drifted.computed_at if drifted else None,
                        open_alerts=alerts.get(key, 0),
                        waiting_for_me=waiting.get(key, 0),
                        updated_by=state.updated_by if state else "",
                        updated_at=state.updated_at if state else None,
                    )
                )
        health = [
            EnvironmentHealth(
                name=env.name,
                guarded=bool(env.config.guarded),
                replicas_alive=sum(1 for r in replicas if r.environment == env.name and r.status == "alive"),
                replicas_total=sum(1 for r in replicas if r.environment == env.name and r.status != "stopped"),
            )
            for env in environments
        ]
        return Overview(
            environments=health, cells=cells, projects=projects, open_alerts=sum(alerts.values()), waiting_for_me=mine
        )

    def waiting_for(self, actor: Actor) -> list[PendingApproval]:
        """Pending sign-offs ``actor`` could give now: they may approve there, did not make the version and
        have not decided on it yet."""
        pending = self._platform.approvals.pending(actor)
        return [
            item
            for item in pending
            if self._platform.approvals.why_not(actor, item.author, item.environment) is None
            and not any(entry.startswith(f"{actor.name} (") for entry in item.approvals)
        ]


def _drift_status(row: DriftResultRow | None) -> str | None:
    if row is None:
        return None
    if row.rows == 0:  # measured on an empty window: no verdict either way
        return "no data"
    return "drifted" if row.drifted else "ok"


def _drift_summary(row: DriftResultRow | None) -> str:
    if row is None:
        return ""
    if row.rows == 0:
        return f"no prediction in the window ({row.window})"
    return f"{row.statistic or 0:.0%} of features drifted (threshold {row.threshold or 0:.0%})"
