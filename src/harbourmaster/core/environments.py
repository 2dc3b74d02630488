"""Environments: an ordered list (dev -> test -> prod by default), each with its own
gates, sign-off policy, SLA, data binding and access rules. Pure configuration."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harbourmaster.core.provenance import DEFAULT_MIN_EVALUATION_ROWS

ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class GateConfig(BaseModel):
    """One promotion gate: ``kind`` picks the gate, the other keys are its options."""

    model_config = ConfigDict(extra="allow")

    kind: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ApprovalRequirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    count: int = Field(default=1, ge=1, le=20)


class ApprovalPolicy(BaseModel):
    """Who must sign off before a version enters the environment."""

    model_config = ConfigDict(extra="forbid")

    required: list[ApprovalRequirement] = Field(default_factory=list)
    expires_after_hours: float | None = Field(default=None, gt=0)
    # Sign-offs by people made approvers after the version was registered: "flag" them, or "exclude" them.
    late_approvers: Literal["flag", "exclude"] = "flag"


class SlaConfig(BaseModel):
    """Service levels a deployment in this environment must keep (every one optional).

    ``p99_ms``, ``error_rate`` and ``fallback_rate`` are objectives with an error budget
    (1% of requests may be slower than ``p99_ms``; ``error_rate`` of them may fail;
    ``fallback_rate`` of them may be answered by a fallback): the SLA monitor alerts on
    how fast each budget burns (``core/sla.py``). ``p50_ms``, ``p95_ms`` and ``min_rps``
    are figures the deployment is compared with.
    """

    model_config = ConfigDict(extra="forbid")

    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    fallback_rate: float | None = Field(default=None, ge=0, le=1)
    min_rps: float | None = Field(default=None, ge=0)


class EnvironmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    guarded: bool = False
    allow_skip: bool = False
    gates: list[GateConfig] = Field(default_factory=list)
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    data: dict[str, Any] = Field(default_factory=dict)
    # Metric gates: accept metrics a registrant reported (not computed by the platform)? On how few rows?
    allow_reported_metrics: bool = False
    min_evaluation_rows: int = Field(default=DEFAULT_MIN_EVALUATION_ROWS, ge=1, le=1_000_000_000)
    # Days the prediction log (and feedback) of this environment is kept; None: for ever. A project's
    # [monitoring.prediction_log] retention_days overrides it.
    prediction_log_retention_days: int | None = Field(default=None, ge=1, le=36_500)


class Environment(BaseModel):
    name: str
    position: int
    config: EnvironmentConfig = Field(default_factory=EnvironmentConfig)


def default_environments() -> list[Environment]:
    """dev (open), test (schema must stay compatible), prod (guarded, two sign-offs)."""
    return [
        Environment(name="dev", position=0, config=EnvironmentConfig(sla=SlaConfig(p99_ms=100))),
        Environment(
            name="test",
            position=1,
            config=EnvironmentConfig(gates=[GateConfig(kind="schema_compatible")], sla=SlaConfig(p99_ms=50)),
        ),
        Environment(
            name="prod",
            position=2,
            config=EnvironmentConfig(
                guarded=True,
                gates=[GateConfig(kind="schema_compatible"), GateConfig(kind="approvals")],
                approvals=ApprovalPolicy(
                    required=[ApprovalRequirement(role="approver", count=2)], expires_after_hours=24 * 14
                ),
                sla=SlaConfig(p99_ms=25, error_rate=0.001),
            ),
        ),
    ]
