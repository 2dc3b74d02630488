"""The SDK's alert and monitoring methods (mixed into ``harbourmaster.Client``): alerts and their
acknowledgement and silencing, notifiers (admins), running the monitors once, deployments' SLA
figures and the Prometheus rules of the environments' SLAs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from harbourmaster.core.environments import Environment
from harbourmaster.core.sla import SlaReport
from harbourmaster.core.sla_rules import rule_groups, to_yaml
from harbourmaster.errors import NotFoundError
from harbourmaster.services.alerts import AlertInfo
from harbourmaster.services.log_maintenance import CompactionInfo, Expired
from harbourmaster.services.monitoring import MonitorRunInfo, RunReport
from harbourmaster.services.notifiers import DeliveryInfo, NotifierInfo

if TYPE_CHECKING:
    from harbourmaster.client import _Remote
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform


class MonitoringMethods:
    """Alerts raised by the monitors, where they are sent, and a monitor run on demand."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def alerts(self, include_resolved: bool = False, limit: int = 200) -> list[AlertInfo]:
        """Firing alerts, newest first (``include_resolved``: resolved ones too)."""
        if self._remote:
            items = self._remote.get("/alerts", params={"all": include_resolved, "limit": limit})
            return [AlertInfo.model_validate(item) for item in items]
        return self._platform.alerts.list(self.actor, include_resolved=include_resolved, limit=limit)

    def alert(self, alert_id: int) -> AlertInfo:
        if self._remote:
            return AlertInfo.model_validate(self._remote.get(f"/alerts/{alert_id}"))
        return self._platform.alerts.get(self.actor, alert_id)

    def alert_deliveries(self, alert_id: int) -> list[DeliveryInfo]:
        if self._remote:
            return [DeliveryInfo.model_validate(item) for item in self._remote.get(f"/alerts/{alert_id}/deliveries")]
        self._platform.alerts.get(self.actor, alert_id)
        return self._platform.notifiers.deliveries(self.actor, alert_id)

    def acknowledge_alert(self, alert_id: int) -> AlertInfo:
        if self._remote:
            return AlertInfo.model_validate(self._remote.post(f"/alerts/{alert_id}/ack"))
        return self._platform.alerts.acknowledge(self.actor, alert_id)

    def silence_alert(self, alert_id: int, duration: timedelta) -> AlertInfo:
        if self._remote:
            body = {"seconds": duration.total_seconds()}
            return AlertInfo.model_validate(self._remote.post(f"/alerts/{alert_id}/silence", json=body))
        return self._platform.alerts.silence(self.actor, alert_id, duration)

    def sla(self, project: str, environment: str) -> SlaReport:
        """A deployment's figures over 5m/30m/1h/6h against its environment's SLA, and its burn alerts."""
        if self._remote:
            return SlaReport.model_validate(self._remote.get(f"/sla/{project}/{environment}"))
        return self._platform.sla.report(self.actor, project, environment)

    def prometheus_rules(self, environment: str | None = None) -> str:
        """Prometheus rules (YAML) expressing the environments' SLAs (``environment``: only its alerts)."""
        environments: list[Environment] = self.environments()  # type: ignore[attr-defined]
        if environment is not None:
            chosen = [env for env in environments if env.name == environment]
            if not chosen:
                raise NotFoundError(
                    f"environment {environment!r} does not exist",
                    f"use one of: {', '.join(env.name for env in environments)}",
                )
            environments = chosen
        return to_yaml(rule_groups(environments))

    def run_monitors(self) -> RunReport:
        """Run every monitor once (on the server with ``url``) and deliver due notifications."""
        if self._remote:
            return RunReport.model_validate(self._remote.post("/monitors/run"))
        return self._platform.monitoring.run_once(self.actor)

    def compact_prediction_log(self, environment: str, project: str | None = None) -> CompactionInfo:
        """Merge the prediction log's small files of every closed hour now (of one environment/project)."""
        if self._remote:
            params = {"project": project} if project else {}
            answer = self._remote.post(f"/prediction-log/{environment}/compact", params=params)
            return CompactionInfo.model_validate(answer)
        return self._platform.prediction_log.compact(self.actor, environment, project)

    def apply_log_retention(self, environment: str, project: str | None = None) -> list[Expired]:
        """Remove the prediction-log days older than each project's retention now."""
        if self._remote:
            params = {"project": project} if project else {}
            items = self._remote.post(f"/prediction-log/{environment}/retention", params=params)
            return [Expired.model_validate(item) for item in items]
        return self._platform.prediction_log.apply_retention(self.actor, environment, project)

    def monitor_runs(self, limit: int = 50) -> list[MonitorRunInfo]:
        if self._remote:
            return [
                MonitorRunInfo.model_validate(i) for i in self._remote.get("/monitors/runs", params={"limit": limit})
            ]
        return self._platform.monitoring.runs(self.actor, limit)

    def notifiers(self) -> list[NotifierInfo]:
        if self._remote:
            return [NotifierInfo.model_validate(item) for item in self._remote.get("/notifiers")]
        return self._platform.notifiers.list(self.actor)

    def add_notifier(self, name: str, kind: str, url: str | None = None, min_severity: str = "warning") -> NotifierInfo:
        if self._remote:
            body = {"name": name, "kind": kind, "url": url, "min_severity": min_severity}
            return NotifierInfo.model_validate(self._remote.post("/notifiers", json=body))
        return self._platform.notifiers.add(self.actor, name, kind, url, min_severity)

    def remove_notifier(self, name: str) -> NotifierInfo:
        if self._remote:
            return NotifierInfo.model_validate(self._remote.request("DELETE", f"/notifiers/{name}"))
        return self._platform.notifiers.remove(self.actor, name)
