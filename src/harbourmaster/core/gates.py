"""Promotion gates: small rule objects, composed per environment, each returning a
verdict with its reason and what would satisfy it.

A gate is anything with ``kind`` and ``evaluate(context) -> GateVerdict``. Built-in
kinds are registered in ``GATES``; a new kind plugs in with ``register_gate`` (or
the ``harbourmaster.gates`` entry-point group) and nothing else changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from harbourmaster.core.environments import ApprovalPolicy, GateConfig
from harbourmaster.core.provenance import COMPUTED, DEFAULT_MIN_EVALUATION_ROWS, REPORTED
from harbourmaster.core.schema import InputSchema, OutputSchema, diff_input_schemas, diff_output_schemas
from harbourmaster.errors import InvalidInputError


class GateVerdict(BaseModel):
    gate: str
    passed: bool
    reason: str
    fix: str | None = None


@dataclass(frozen=True)
class ApprovalRecord:
    actor: str
    roles: frozenset[str]
    decision: str  # "approve" | "reject"
    digest: str
    created_at: datetime
    expires_at: datetime | None
    comment: str = ""
    standing: str = "ok"  # "ok", or why the sign-off no longer counts: "disabled", "role removed", "unknown user"
    joined_late: bool = False  # the approver was created or given roles after the version was registered


@dataclass(frozen=True)
class CandidateVersion:
    project: str
    number: int
    digest: str
    created_by: str
    metrics: dict[str, float]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    metrics_source: str = REPORTED  # "computed" by the platform, or "reported" by the registrant
    evaluation_rows: int | None = None


@dataclass(frozen=True)
class GateContext:
    """Everything a gate may look at; gathered by the promotion service, no I/O here."""

    candidate: CandidateVersion
    environment: str
    approval_policy: ApprovalPolicy
    champion: CandidateVersion | None
    approvals: tuple[ApprovalRecord, ...]
    now: datetime
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    allow_reported_metrics: bool = False
    min_evaluation_rows: int = DEFAULT_MIN_EVALUATION_ROWS


class Gate(Protocol):
    kind: str

    def evaluate(self, context: GateContext) -> GateVerdict: ...


@dataclass(frozen=True)
class MetricThresholdGate:
    """A held-out metric must be at least ``min`` (or at most ``max``).

    Only numbers the platform computed count (unless the environment allows
    reported ones), and only if evaluated on at least ``min_evaluation_rows`` rows.
    """

    metric: str
    min: float | None = None
    max: float | None = None
    kind: str = "metric"

    def evaluate(self, context: GateContext) -> GateVerdict:
        name = f"metric {self.metric}"
        value = context.candidate.metrics.get(self.metric)
        wanted = " and ".join(
            part
            for part in (
                f">= {self.min}" if self.min is not None else "",
                f"<= {self.max}" if self.max is not None else "",
            )
            if part
        )
        if value is None or not math.isfinite(value):
            return GateVerdict(
                gate=name,
                passed=False,
                reason=f"v{context.candidate.number} has no {self.metric}",
                fix=f"register a version evaluated on {self.metric}",
            )
        unfit = _unfit_metrics(context, self.metric, value)
        if unfit is not None:
            return unfit
        ok = (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        return GateVerdict(
            gate=name,
            passed=ok,
            reason=f"{self.metric} = {value:.4f} (needs {wanted})",
            fix=None if ok else f"train a version whose held-out {self.metric} is {wanted}",
        )


def _unfit_metrics(context: GateContext, metric: str, value: float) -> GateVerdict | None:
    """A refusal if the candidate's metrics may not be judged here: reported, or on too few rows."""
    candidate, name = context.candidate, f"metric {metric}"
    if candidate.metrics_source != COMPUTED and not context.allow_reported_metrics:
        return GateVerdict(
            gate=name,
            passed=False,
            reason=f"v{candidate.number}'s {metric} = {value:.4f} is {candidate.metrics_source} by its registrant, "
            "not computed by the platform",
            fix=f"train it with the platform (harbourmaster train PROJECT_DIR evaluates on a held-out split it "
            f"draws itself), or let {context.environment} accept reported metrics (allow_reported_metrics = true)",
        )
    rows, needed = candidate.evaluation_rows, context.min_evaluation_rows
    if rows is None or rows < needed:
        on = f"on {rows} row(s)" if rows is not None else "on an unknown number of rows"
        return GateVerdict(
            gate=name,
            passed=False,
            reason=f"v{candidate.number} is unfit for metric gates: evaluated {on}, "
            f"{context.environment} needs at least {needed}",
            fix=f"train on more data or a larger [evaluation] holdout so that at least {needed} rows are held out",
        )
    return None


@dataclass(frozen=True)
class SchemaCompatibleGate:
    """The candidate must accept what the current champion accepts (no breaking change)."""

    kind: str = "schema_compatible"

    def evaluate(self, context: GateContext) -> GateVerdict:
        name = "schema compatible"
        if context.champion is None:
            return GateVerdict(gate=name, passed=True, reason=f"no champion in {context.environment} to compare with")
        changes = diff_input_schemas(
            InputSchema.model_validate(context.champion.input_schema),
            InputSchema.model_validate(context.candidate.input_schema),
        ) + diff_output_schemas(
            OutputSchema.model_validate(context.champion.output_schema),
            OutputSchema.model_validate(context.candidate.output_schema),
        )
        breaking = [change for change in changes if change.breaking]
        if not breaking:
            return GateVerdict(gate=name, passed=True, reason=f"compatible with champion v{context.champion.number}")
        listed = "; ".join(f"{c.column}: {c.change} {c.before} -> {c.after}" for c in breaking[:5])
        return GateVerdict(
            gate=name,
            passed=False,
            reason=f"breaking changes against champion v{context.champion.number}: {listed}",
            fix="keep the champion's input columns and types, or coordinate the change with the consumers first",
        )


@dataclass(frozen=True)
class ApprovalsGate:
    """Enough valid sign-offs from the required roles; the author's never counts.

    Valid means: for this exact bundle digest, not expired, not from the version's
    author. Any valid rejection blocks the gate. An approval counts only while its
    approver is enabled and still holds the role it signed with; approvers created or
    given their roles after the version was registered are flagged (or not counted,
    with the policy's ``late_approvers = "exclude"``).
    """

    kind: str = "approvals"

    def evaluate(self, context: GateContext) -> GateVerdict:
        name = "approvals"
        policy = context.approval_policy
        valid = [
            approval
            for approval in context.approvals
            if approval.digest == context.candidate.digest
            and approval.actor != context.candidate.created_by
            and (approval.expires_at is None or approval.expires_at > context.now)
        ]
        rejections = [approval for approval in valid if approval.decision == "reject"]
        if rejections:
            who = ", ".join(sorted({approval.actor for approval in rejections}))
            return GateVerdict(
                gate=name,
                passed=False,
                reason=f"rejected by {who}",
                fix="address the rejection and register a new version",
            )
        if not policy.required:
            return GateVerdict(gate=name, passed=True, reason=f"{context.environment} requires no sign-off")
        approvals = [approval for approval in valid if approval.decision == "approve"]
        lapsed = [approval for approval in approvals if approval.standing != "ok"]
        late = [approval for approval in approvals if approval.standing == "ok" and approval.joined_late]
        approvers = [approval for approval in approvals if approval.standing == "ok"]
        if policy.late_approvers == "exclude":
            approvers = [approval for approval in approvers if not approval.joined_late]
        notes = [f"{approval.actor}'s sign-off no longer counts: {approval.standing}" for approval in lapsed]
        if late:
            flagged = ", ".join(sorted({approval.actor for approval in late}))
            verb = "not counted" if policy.late_approvers == "exclude" else "flagged"
            notes.append(f"{verb}: {flagged} became approver after v{context.candidate.number} was registered")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        missing: list[str] = []
        used: set[str] = set()
        for requirement in policy.required:
            eligible = sorted({a.actor for a in approvers if requirement.role in a.roles and a.actor not in used})
            taken = eligible[: requirement.count]
            used.update(taken)
            if len(taken) < requirement.count:
                missing.append(f"{requirement.count - len(taken)} more from role {requirement.role}")
        if missing:
            return GateVerdict(
                gate=name,
                passed=False,
                reason=f"v{context.candidate.number} has {len(approvers)} valid approval(s); needs "
                + ", ".join(missing)
                + suffix,
                fix=f"ask approvers (not the author {context.candidate.created_by}) to run: harbourmaster approve "
                f"{context.candidate.project} {context.candidate.number} --env {context.environment}",
            )
        return GateVerdict(gate=name, passed=True, reason="signed off by " + ", ".join(sorted(used)) + suffix)


@dataclass(frozen=True)
class EvidenceGate:
    """A check the platform recorded about this exact digest for this environment must have passed:
    ``drift`` (the candidate drifts less than the champion on the environment's current window) or
    ``quality`` (it is not worse than the champion beyond tolerance), see ``services/evidence.py``.
    ``max_age_hours``: older evidence does not count. Other check names are the slot for later checks."""

    check: str
    max_age_hours: float | None = None
    kind: str = "evidence"

    def evaluate(self, context: GateContext) -> GateVerdict:
        name = f"evidence {self.check}"
        candidate = context.candidate
        record_it = (
            f"record it: harbourmaster evidence {candidate.project} {candidate.number} "
            f"--to {context.environment} --check {self.check}"
        )
        if self.check == "loadtest":  # recorded by running one (services/loadtest.py)
            record_it = (
                f"record it: harbourmaster loadtest {candidate.project} {candidate.number} --to {context.environment}"
            )
        record = context.evidence.get(self.check)
        if record is None:
            return GateVerdict(
                gate=name,
                passed=False,
                reason=f"no {self.check} evidence recorded for v{candidate.number} ({candidate.digest[:12]}…) "
                f"in {context.environment}",
                fix=record_it,
            )
        links = ", ".join(record.get("reports") or [])
        where = f" [evidence #{record.get('id')}{': ' + links if links else ''}]"
        recorded_at = record.get("recorded_at")
        if self.max_age_hours is not None and isinstance(recorded_at, datetime):
            age = (context.now - recorded_at).total_seconds() / 3600
            if age > self.max_age_hours:
                return GateVerdict(
                    gate=name,
                    passed=False,
                    reason=f"the {self.check} evidence is {age:.1f} h old, more than the {self.max_age_hours:g} h "
                    f"{context.environment} accepts{where}",
                    fix=record_it,
                )
        passed = bool(record.get("passed"))
        return GateVerdict(
            gate=name,
            passed=passed,
            reason=str(record.get("summary", record)) + where,
            fix=None if passed else f"fix what the {self.check} check reported, then {record_it}",
        )


GateFactory = Callable[..., Gate]
GATES: dict[str, GateFactory] = {
    "metric": MetricThresholdGate,
    "schema_compatible": SchemaCompatibleGate,
    "approvals": ApprovalsGate,
    "evidence": EvidenceGate,
}


def register_gate(kind: str, factory: GateFactory) -> None:
    """Add a gate kind (third parties, or later parts of the platform)."""
    GATES[kind] = factory


def _load_entry_point_gates() -> None:
    for entry in entry_points(group="harbourmaster.gates"):
        if entry.name not in GATES:
            GATES[entry.name] = entry.load()


def build_gate(config: GateConfig) -> Gate:
    """A gate object from an environment's configuration entry."""
    if config.kind not in GATES:
        _load_entry_point_gates()
    factory = GATES.get(config.kind)
    if factory is None:
        raise InvalidInputError(f"unknown gate kind {config.kind!r}", f"known kinds: {', '.join(sorted(GATES))}")
    try:
        return factory(**config.options)
    except TypeError as exc:
        raise InvalidInputError(
            f"gate {config.kind!r} has wrong options {config.options}: {exc}",
            "see docs/governance.md for each gate's options",
        ) from exc


def evaluate_gates(configs: list[GateConfig], context: GateContext) -> list[GateVerdict]:
    """Every gate's verdict (all are evaluated, so a refusal lists every failure)."""
    return [build_gate(config).evaluate(context) for config in configs]
