"""Records that cross layers and the wire: what services return and the API sends.

Pure data (pydantic), no I/O. The SDK returns these same types in embedded and
in server mode, so a script works unchanged against either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, computed_field

from harbourmaster.core.run_checks import ValidationReport
from harbourmaster.core.run_steps import RunStep
from harbourmaster.core.schema import SchemaChange
from harbourmaster.core.version_diff import MetricChange


class ProjectInfo(BaseModel):
    name: str
    description: str = ""
    created_by: str
    created_at: datetime
    version_count: int = 0
    latest_version: int | None = None


class VersionSummary(BaseModel):
    project: str
    number: int
    digest: str
    format: str
    metrics: dict[str, float]
    metrics_source: str = "reported"  # "computed" by the platform on a held-out split it drew, or "reported"
    evaluation_rows: int | None = None  # held-out rows the metrics were evaluated on
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    created_by: str
    created_at: datetime


class VersionDetail(VersionSummary):
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    lineage: dict[str, Any]
    trusted_pickle: bool = False
    code_modules: list[str] = Field(default_factory=list)  # derived by the registry from the bundle's files


class ProjectTrust(BaseModel):
    """What a project's model files may contain beyond the platform's own list (admin-set)."""

    project: str
    trusted_types: list[str] = Field(default_factory=list)
    platform_trusted_types: list[str] = Field(default_factory=list)
    trust_pickle: bool = False


class CodeFile(BaseModel):
    path: str
    size: int
    sha256: str


class ReferencedType(BaseModel):
    name: str
    status: str  # skops-default, platform, project, project-code, untrusted, forbidden, pickle


class VersionInspection(BaseModel):
    """A version as a reviewer sees it, read without loading or importing anything."""

    project: str
    number: int
    digest: str
    format: str
    model_file: str
    model_size: int
    description: str = ""
    created_by: str
    created_at: datetime
    tags: dict[str, str] = Field(default_factory=dict)
    prepare: str | None = None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    metrics: dict[str, float]
    metrics_provenance: Any = None
    lineage: dict[str, Any]
    code_modules: list[str] = Field(default_factory=list)
    code_files: list[CodeFile] = Field(default_factory=list)
    referenced_types: list[ReferencedType] = Field(default_factory=list)
    trusted_types: list[str] = Field(default_factory=list)
    file: str | None = None  # the path asked for with --file
    file_text: str | None = None


class FieldChange(BaseModel):
    before: Any = None
    after: Any = None


class VersionDiff(BaseModel):
    project: str
    old: int
    new: int
    input_changes: list[SchemaChange]
    output_changes: list[SchemaChange]
    metric_changes: list[MetricChange]
    lineage_changes: dict[str, FieldChange]

    @property
    def breaking(self) -> bool:
        return any(change.breaking for change in [*self.input_changes, *self.output_changes])


class RunInfo(BaseModel):
    id: int
    project: str
    kind: str
    status: str
    environment: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    version_number: int | None = None
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    created_by: str
    validation: str | None = Field(default=None, description="valid, warnings or invalid (None: not checked)")
    # The whole record (a run's listing leaves these out: `runs show RUN` reads them).
    validation_report: ValidationReport | None = None
    steps: list[RunStep] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class TrainResult(BaseModel):
    run: RunInfo
    version: VersionDetail


class VersionPointer(BaseModel):
    """A version as a replica needs it: its number and its bundle digest."""

    number: int
    digest: str


class ChallengerState(BaseModel):
    version: VersionPointer
    mode: str  # "canary" | "shadow"
    weight: float = 0.0  # percent of traffic for a canary
    sticky_key: str | None = None  # request field/header that pins a caller to one side


class DeploymentState(BaseModel):
    """The desired state of one project in one environment."""

    project: str
    environment: str
    champion: VersionPointer | None = None
    challenger: ChallengerState | None = None
    failover: VersionPointer | None = None
    fallback: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    revision: int
    updated_by: str
    updated_at: datetime


class DeploymentEvent(BaseModel):
    project: str
    environment: str
    revision: int
    action: str
    champion: int | None = None
    state: dict[str, Any]
    details: dict[str, Any] = Field(default_factory=dict)
    actor: str
    created_at: datetime


class ReplicaInfo(BaseModel):
    id: str
    environment: str
    host: str
    pid: int
    address: str = ""
    status: str
    loaded: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    last_seen: datetime


class ApprovalInfo(BaseModel):
    id: int
    project: str
    version: int
    digest: str
    environment: str
    decision: str
    actor: str
    comment: str = ""
    created_at: datetime
    expires_at: datetime | None = None


class GateResult(BaseModel):
    gate: str
    passed: bool
    reason: str
    fix: str | None = None


class PromotionInfo(BaseModel):
    id: int
    project: str
    version: int
    digest: str
    from_environment: str | None
    to_environment: str
    outcome: str
    gates: list[GateResult]
    actor: str
    created_at: datetime
    rollout_id: int | None = None  # the progressive rollout this promotion started (canary, shadow)


class PendingApproval(BaseModel):
    """A version waiting to enter an environment, and the sign-offs it still needs."""

    project: str
    version: int
    digest: str
    environment: str
    author: str
    approvals: list[str]
    missing: str | None


class HistoryEntry(BaseModel):
    """One change of what served an environment, with who did it and who signed off."""

    at: datetime
    environment: str
    action: str
    version: int | None
    digest: str | None
    actor: str
    approved_by: list[str] = Field(default_factory=list)
    revision: int
