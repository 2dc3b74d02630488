"""The alert model's pure logic: what a monitor result is, how a rule turns results into
alert verdicts, and how a verdict changes an open alert. No I/O.

A monitor measures and writes results; a rule reads results and says, per subject,
"firing at this severity" or "clear"; ``transition`` decides what that does to the
one open alert of that rule and subject (open it, escalate it, keep it, resolve it)
and whether people are told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    """A result's verdict on what it measured."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {"info": 0, Severity.WARNING.value: 1, Severity.CRITICAL.value: 2}


@dataclass(frozen=True)
class MonitorResult:
    """One measurement by a monitor about one subject (a replica, the database, a deployment ...)."""

    monitor: str  # the monitor kind: database, artifact-store, replica, drift ...
    metric: str  # what was measured: latency, free-space, heartbeat-age ...
    subject: str  # what it concerns, e.g. "database", "replica:abc", "churn/prod"
    status: Status
    summary: str
    value: float | None = None
    project: str | None = None
    environment: str | None = None
    evidence: str | None = None  # a link to what backs it: "replica:abc", "drift-report:12"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A rule's answer for one subject: firing (with a severity) or clear."""

    rule: str
    subject: str
    firing: bool
    severity: Severity = Severity.WARNING
    summary: str = ""
    value: float | None = None
    project: str | None = None
    environment: str | None = None
    evidence: str | None = None
    monitor: str = ""


class Rule(Protocol):
    """Reads one monitor run's results and returns a verdict per subject it judges."""

    name: str

    def evaluate(self, results: Sequence[MonitorResult]) -> list[Verdict]: ...


@dataclass(frozen=True)
class StatusRule:
    """The default rule: a result of ``monitor``/``metric`` that is warning or critical fires at
    that severity; an ok result clears. Thresholds live in the monitor that set the status."""

    name: str
    monitor: str
    metric: str

    def evaluate(self, results: Sequence[MonitorResult]) -> list[Verdict]:
        verdicts = []
        for result in results:
            if result.monitor != self.monitor or result.metric != self.metric:
                continue
            firing = result.status != Status.OK
            verdicts.append(
                Verdict(
                    rule=self.name,
                    subject=result.subject,
                    firing=firing,
                    severity=Severity(result.status.value) if firing else Severity.WARNING,
                    summary=result.summary,
                    value=result.value,
                    project=result.project,
                    environment=result.environment,
                    evidence=result.evidence,
                    monitor=result.monitor,
                )
            )
        return verdicts


class Change(StrEnum):
    """What a verdict did to the alert of its rule and subject."""

    OPENED = "firing"  # a new alert
    ESCALATED = "escalated"  # still firing, now more severe
    UPDATED = "updated"  # still firing, nothing people must hear again
    RESOLVED = "resolved"
    NONE = "none"  # clear, and nothing was open


NOTIFIED_CHANGES = frozenset({Change.OPENED, Change.ESCALATED, Change.RESOLVED})


def transition(open_severity: str | None, verdict: Verdict) -> Change:
    """The change a verdict makes given the open alert's severity (None: no open alert)."""
    if open_severity is None:
        return Change.OPENED if verdict.firing else Change.NONE
    if not verdict.firing:
        return Change.RESOLVED
    if SEVERITY_RANK[verdict.severity.value] > SEVERITY_RANK.get(open_severity, 0):
        return Change.ESCALATED
    return Change.UPDATED


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)
