"""Alerts: rules' verdicts applied to the stored alerts (one open alert per rule and subject),
notifications queued with each change people must hear about, and people's reads, acks
and silences (with the same roles and grants on every face, audited).

Reading an alert is a read of its environment (a prod alert is a prod read, audited as
such); acknowledging or silencing one needs the ``deploy`` permission there (operators,
and on a guarded environment a deploy grant), like any other change to how it is run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.alerts import NOTIFIED_CHANGES, Change, Verdict, transition
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.notifiers import payload_of
from harbourmaster.store.tables import AlertRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.alerts")
MAX_SILENCE = timedelta(days=30)


class AlertInfo(BaseModel):
    id: int
    rule: str
    monitor: str
    subject: str
    status: str  # firing | resolved
    severity: str
    project: str | None
    environment: str | None
    summary: str
    value: float | None
    evidence: str | None
    fired_count: int
    first_fired_at: datetime
    last_fired_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    silenced_by: str | None
    silenced_until: datetime | None


class AppliedChange(BaseModel):
    alert_id: int
    rule: str
    subject: str
    change: str
    notifications: int


def _info(row: AlertRow) -> AlertInfo:
    return AlertInfo.model_validate(row, from_attributes=True)


def _open_key(rule: str, subject: str) -> str:
    return f"{rule}|{subject}"


class AlertService:
    """The one place alerts change: from verdicts (the platform) or from people (ack, silence)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- from rules --------------------------------------------------------------------

    def apply(self, verdicts: Sequence[Verdict], now: datetime | None = None) -> list[AppliedChange]:
        """Open, update, escalate or resolve the alert of each verdict's rule and subject, and queue
        notifications for the changes people must hear about, in one transaction."""
        moment = now or datetime.now(UTC)
        for attempt in (1, 2):
            changes: list[AppliedChange] = []
            try:
                with self._platform.db.transaction() as session:
                    for verdict in verdicts:
                        applied = self._apply_one(session, verdict, moment)
                        if applied is not None:
                            changes.append(applied)
                break
            except IntegrityError:
                # Another control plane opened the same alert first (the unique open key): apply again,
                # now as an update of its alert.
                if attempt == 2:
                    raise
        for applied in changes:
            if applied.change in NOTIFIED_CHANGES:
                log.warning("alert %s %s: %s on %s", applied.alert_id, applied.change, applied.rule, applied.subject)
        return changes

    def _apply_one(self, session: Session, verdict: Verdict, moment: datetime) -> AppliedChange | None:
        key = _open_key(verdict.rule, verdict.subject)
        row = session.scalar(select(AlertRow).where(AlertRow.open_key == key).with_for_update())
        change = transition(row.severity if row is not None else None, verdict)
        if change == Change.NONE:
            return None
        if row is None:
            row = AlertRow(
                rule=verdict.rule,
                subject=verdict.subject,
                open_key=key,
                monitor=verdict.monitor,
                status="firing",
                severity=verdict.severity.value,
                fired_count=1,
                state_seq=1,
                first_fired_at=moment,
                last_fired_at=moment,
            )
            session.add(row)
        elif change == Change.RESOLVED:
            row.status, row.open_key, row.resolved_at = "resolved", None, moment
            row.state_seq += 1
        else:
            row.fired_count += 1
            row.last_fired_at = moment
            row.severity = verdict.severity.value
            if change == Change.ESCALATED:
                row.state_seq += 1
        if change != Change.RESOLVED:
            row.summary, row.value = verdict.summary[:4000], verdict.value
            row.project, row.environment, row.evidence = verdict.project, verdict.environment, verdict.evidence
        else:
            row.summary = f"cleared: {verdict.summary}"[:4000] if verdict.summary else row.summary
            row.value = verdict.value if verdict.value is not None else row.value
        session.flush()
        notifications = 0
        if change in NOTIFIED_CHANGES and not _silenced(row, moment):
            notifications = self._platform.notifiers.queue(
                session, row.id, row.state_seq, change.value, row.severity, payload_of(row, change.value)
            )
        return AppliedChange(
            alert_id=row.id, rule=row.rule, subject=row.subject, change=change.value, notifications=notifications
        )

    # -- people --------------------------------------------------------------------------

    def list(self, actor: Actor, *, include_resolved: bool = False, limit: int = 200) -> list[AlertInfo]:
        """Firing alerts (with ``include_resolved`` also resolved ones), newest first; reading alerts
        of a guarded environment is audited as a read there."""
        self._platform.access.require(actor, Permission.READ, target="alerts")
        query = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if not include_resolved:
            query = query.where(AlertRow.status == "firing")
        with self._platform.db.reader() as session:
            items = [_info(row) for row in session.scalars(query)]
        self._platform.access.audit_guarded_read(actor, "alerts.read", "alerts", (a.environment for a in items))
        return items

    def get(self, actor: Actor, alert_id: int) -> AlertInfo:
        self._platform.access.require(actor, Permission.READ, target=f"alert:{alert_id}")
        with self._platform.db.reader() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFoundError(f"no alert {alert_id}", "see harbourmaster alerts --all")
            info = _info(row)
        self._platform.access.audit_guarded_read(actor, "alerts.read", f"alert:{alert_id}", [info.environment])
        return info

    def acknowledge(self, actor: Actor, alert_id: int) -> AlertInfo:
        """Someone is on it: recorded (audited); a later escalation or resolution is still notified."""
        environment = self._environment_of(alert_id)
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"alert:{alert_id}")
        with self._platform.db.transaction() as session:
            row = self._row(session, alert_id)
            if row.status != "firing":
                raise ConflictError(f"alert {alert_id} is resolved already", "only a firing alert can be acknowledged")
            before = {"acknowledged_by": row.acknowledged_by}
            row.acknowledged_by, row.acknowledged_at = actor.name, datetime.now(UTC)
            self._platform.audit.record(
                session,
                actor,
                "alert.acknowledge",
                f"alert:{alert_id}",
                environment=row.environment,
                before=before,
                after={"acknowledged_by": actor.name},
                details={"rule": row.rule, "subject": row.subject},
            )
            return _info(row)

    def silence(self, actor: Actor, alert_id: int, duration: timedelta) -> AlertInfo:
        """No notification of this alert's changes until the silence ends (audited)."""
        if not timedelta(0) < duration <= MAX_SILENCE:
            raise InvalidInputError(
                f"a silence of {duration} is out of range", "give a duration up to 30 days, e.g. --for 2h"
            )
        environment = self._environment_of(alert_id)
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"alert:{alert_id}")
        with self._platform.db.transaction() as session:
            row = self._row(session, alert_id)
            if row.status != "firing":
                raise ConflictError(f"alert {alert_id} is resolved already", "only a firing alert can be silenced")
            before = {"silenced_until": row.silenced_until.isoformat() if row.silenced_until else None}
            row.silenced_by, row.silenced_until = actor.name, datetime.now(UTC) + duration
            self._platform.audit.record(
                session,
                actor,
                "alert.silence",
                f"alert:{alert_id}",
                environment=row.environment,
                before=before,
                after={"silenced_until": row.silenced_until.isoformat(), "seconds": duration.total_seconds()},
                details={"rule": row.rule, "subject": row.subject},
            )
            return _info(row)

    def _environment_of(self, alert_id: int) -> str | None:
        with self._platform.db.reader() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFoundError(f"no alert {alert_id}", "see harbourmaster alerts --all")
            return row.environment

    @staticmethod
    def _row(session: Session, alert_id: int) -> AlertRow:
        row = session.get(AlertRow, alert_id)
        if row is None:
            raise NotFoundError(f"no alert {alert_id}", "see harbourmaster alerts --all")
        return row


def _silenced(row: AlertRow, moment: datetime) -> bool:
    return row.silenced_until is not None and row.silenced_until > moment
