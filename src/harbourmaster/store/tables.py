"""The metadata tables (SQLAlchemy 2 declarative). Migrations in ``migrations/``
must match these; ``tests/store`` checks that they do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from harbourmaster.store.audit_guard import install_on_create


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Types an admin trusts for this project's model files (harbourmaster trust; 0008).
    trusted_types: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list, server_default="[]")

    versions: Mapped[list[VersionRow]] = relationship(back_populates="project", order_by="VersionRow.number")


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_versions_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    format: Mapped[str] = mapped_column(String(16), nullable=False)
    trusted_pickle: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    output_schema: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # Who computed the metrics: "computed" (the platform, on a held-out split it drew) or "reported".
    metrics_source: Mapped[str] = mapped_column(
        String(16), nullable=False, default="reported", server_default="reported"
    )
    evaluation_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Code modules the registry derived from the bundle's files (NULL: registered before 0008).
    code_modules: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)

    project: Mapped[ProjectRow] = relationship(back_populates="versions")
    tags: Mapped[list[VersionTagRow]] = relationship(
        back_populates="version", cascade="all, delete-orphan", order_by="VersionTagRow.key"
    )


class VersionTagRow(Base):
    __tablename__ = "version_tags"
    __table_args__ = (UniqueConstraint("version_id", "key", name="uq_version_tags_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), nullable=False, index=True)
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    version: Mapped[VersionRow] = relationship(back_populates="tags")


class RunRow(Base):
    """One execution of a pipeline (training, retraining, batch scoring, data preparation).

    ``validation`` is the verdict on its input data (valid, warnings, invalid; NULL: not checked),
    ``validation_report`` the findings behind it and ``steps`` each step's timings and rows (0013).
    """

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    validation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    validation_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    steps: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list, server_default="[]")


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    roles: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the roles last changed: sign-offs by someone made an approver after a version was registered are flagged.
    roles_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    tokens: Mapped[list[TokenRow]] = relationship(back_populates="user")


class TokenRow(Base):
    """An API token. Only its SHA-256 is kept; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The token that minted this one (None: minted by an admin session, init or break-glass); it dies with it.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), nullable=True, index=True)

    user: Mapped[UserRow] = relationship(back_populates="tokens")


class DutyRequestRow(Base):
    """A sensitive administration step waiting for a second admin's confirmation."""

    __tablename__ = "duty_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(128), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PlatformSettingRow(Base):
    """A platform-wide governance setting (separation-of-duties mode, token lifetimes per role)."""

    __tablename__ = "platform_settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReplicaCredentialRow(Base):
    """A replica credential: a token scoped to one environment's data plane. Only its SHA-256 is kept."""

    __tablename__ = "replica_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The API token it was minted with: the credential dies with it (null: minted without a token).
    parent_token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EnvironmentRow(Base):
    """An ordered environment (dev, test, prod ...) and its configuration."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeploymentRow(Base):
    """The desired state of one project in one environment; replicas reconcile toward it."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("project_id", "environment", name="uq_deployments_project_env"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), nullable=False, index=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    champion_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), nullable=True)
    challenger_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), nullable=True)
    challenger: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    failover_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), nullable=True)
    fallback: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    project: Mapped[ProjectRow] = relationship()
    champion: Mapped[VersionRow | None] = relationship(foreign_keys=[champion_version_id])
    challenger_version: Mapped[VersionRow | None] = relationship(foreign_keys=[challenger_version_id])
    failover: Mapped[VersionRow | None] = relationship(foreign_keys=[failover_version_id])


class DeploymentEventRow(Base):
    """Every change of a deployment's desired state, with a snapshot: the history."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), nullable=False, index=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    champion: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    audit_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its audit entry


class ReplicaRow(Base):
    """A serving replica's heartbeat: alive, what it has loaded, its CPU and memory."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    address: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    loaded: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GrantRow(Base):
    """Permission for one user on one environment: ``deploy`` (change it) or ``predict`` (call it)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("user_id", "environment", "permission", name="uq_grants"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    permission: Mapped[str] = mapped_column(String(32), nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[UserRow] = relationship()


class ApprovalRow(Base):
    """A sign-off (or rejection) of one bundle digest for one environment."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    version_number: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    actor_roles: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The audit entry that recorded this sign-off; a row without a matching entry does not count.
    audit_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PromotionRow(Base):
    """One promotion attempt with every gate's verdict, promoted or refused."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    version_number: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    from_environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_environment: Mapped[str] = mapped_column(String(64), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    gates: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    audit_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its audit entry


class MonitorRunRow(Base):
    """One run of one monitor: when, and whether it could measure (a monitor that raised is ``failed``)."""

    __tablename__ = "monitor_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    monitor: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    results: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MonitorResultRow(Base):
    """One measurement a monitor wrote: about what, its value, its status and the evidence behind it."""

    __tablename__ = "monitor_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_runs.id"), nullable=True, index=True)
    monitor: Mapped[str] = mapped_column(String(64), nullable=False)
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    project: Mapped[str | None] = mapped_column(String(64), nullable=True)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    evidence: Mapped[str | None] = mapped_column(String(512), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class AlertRow(Base):
    """An alert raised by a rule about a subject. ``open_key`` (rule and subject) is set while it
    fires and cleared when it resolves, so one open alert per rule and subject is a unique key."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    open_key: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    monitor: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    project: Mapped[str | None] = mapped_column(String(64), nullable=True)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence: Mapped[str | None] = mapped_column(String(512), nullable=True)
    fired_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Bumped at each change people are told about (fired, escalated, resolved): part of the delivery key.
    state_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    first_fired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_fired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    silenced_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NotifierRow(Base):
    """Where alerts are sent: a log line, a JSON webhook or a Slack-compatible webhook (admins)."""

    __tablename__ = "notifiers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)  # a secret: never shown back in full
    min_severity: Mapped[str] = mapped_column(String(16), nullable=False, default="warning")
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AlertDeliveryRow(Base):
    """One notification of one alert change to one notifier. ``key`` is its idempotency key: written
    with the change (nothing is lost if the server stops), sent with every attempt, delivered once."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), nullable=False, index=True)
    notifier_id: Mapped[int | None] = mapped_column(ForeignKey("notifiers.id", ondelete="SET NULL"), nullable=True)
    notifier_name: Mapped[str] = mapped_column(String(64), nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditEventRow(Base):
    """One entry of the hash-chained audit log. ``seq`` is gapless; ``hash`` covers the
    entry's canonical content and ``prev_hash``, so any edit, removal or reordering shows."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    at: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str] = mapped_column(String(255), nullable=False)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # Ed25519 over ``hash`` with the control plane's key (hex); NULL only on entries from before the key.
    signature: Mapped[str | None] = mapped_column(String(128), nullable=True)


install_on_create(AuditEventRow.__table__)  # append-only, however the table gets created


class DriftResultRow(Base):
    """One measured feature of one drift report: the time series of a deployment's drift (0015).

    ``kind`` is ``feature``, ``prediction`` (the model's output) or ``dataset`` (the verdict: the
    drifted share as statistic, the configured share as threshold). ``details`` holds the data quality
    figures and any note.
    """

    __tablename__ = "drift_results"
    __table_args__ = (Index("ix_drift_results_series", "project", "environment", "feature", "computed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    window: Mapped[str] = mapped_column(String(128), nullable=False)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    feature: Mapped[str] = mapped_column(String(255), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    statistic: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    drifted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QualityReportRow(Base):
    """One model-quality report of a deployment's window: labelled counts, metrics against the
    version's held-out ones (0012)."""

    __tablename__ = "quality_reports"
    __table_args__ = (Index("ix_quality_reports_series", "project", "environment", "computed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    task: Mapped[str] = mapped_column(String(16), nullable=False)
    window: Mapped[str] = mapped_column(String(128), nullable=False)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    labelled: Mapped[int] = mapped_column(Integer, nullable=False)
    unlabelled: Mapped[int] = mapped_column(Integer, nullable=False)
    unknown_labels: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    judged: Mapped[bool] = mapped_column(Boolean, nullable=False)
    degraded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    worst_drop: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the whole report: metrics with their held-out figures and drops, thresholds, notes
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GateEvidenceRow(Base):
    """One piece of evidence about a version (by digest) for promotion into an environment: a check
    the platform computed (``drift``, ``quality``), its verdict, summary and the reports behind it (0012)."""

    __tablename__ = "gate_evidence"
    __table_args__ = (Index("ix_gate_evidence_lookup", "project", "digest", "environment", "check", "recorded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    check: Mapped[str] = mapped_column(String(64), nullable=False)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    reports: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)  # links: drift-report:ID ...
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    recorded_by: Mapped[str] = mapped_column(String(128), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrafficSampleRow(Base):
    """A replica's cumulative counters for one project at one heartbeat (the SLA monitor's raw data):
    window figures are differences between samples (``core/sla.py``)."""

    __tablename__ = "traffic_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    replica: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)  # when its counters were zero
    requests: Mapped[float] = mapped_column(Float, nullable=False)
    errors: Mapped[float] = mapped_column(Float, nullable=False)
    fallbacks: Mapped[float] = mapped_column(Float, nullable=False)
    timed: Mapped[float] = mapped_column(Float, nullable=False)
    latency_sum: Mapped[float] = mapped_column(Float, nullable=False)
    buckets: Mapped[list[float]] = mapped_column(JSON, nullable=False, default=list)
    # None: the whole project; "champion" / "challenger": that side of a canary (the rollout controller's data)
    side: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # ``sampled_at`` in integer microseconds since the epoch (interval arithmetic in SQL, both backends)
    at_us: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The increase over the series' previous sample (restart-aware, core/sla.py), kept when the sample is:
    # the console sums these per interval in SQL instead of differencing every sample per page load.
    inc_requests: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_errors: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_fallbacks: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_timed: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_latency_sum: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b0: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b1: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b2: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b3: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b4: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b5: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b6: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b7: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b8: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b9: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b10: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b11: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inc_b12: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)

    __table_args__ = (
        Index("ix_traffic_samples_series", "environment", "project", "sampled_at"),
        Index("ix_traffic_samples_increments", "environment", "project", "at_us"),
        Index("ix_traffic_samples_replica", "replica", "environment", "project", "at_us"),
    )


class ConsoleSessionRow(Base):
    """A console log-in: the SHA-256 of its session id (the cookie's value is never stored), the SHA-256
    of the token it logged in with (re-authenticated on every request), its CSRF secret and times."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    user: Mapped[str] = mapped_column(String(128), nullable=False)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class RolloutRow(Base):
    """A progressive rollout of a challenger in one environment (canary steps or a shadow period), and
    where it stands: the rollout controller resumes from this row after a control-plane restart."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int] = mapped_column(Integer, nullable=False)
    strategy: Mapped[str] = mapped_column(String(16), nullable=False)  # canary | shadow
    steps: Mapped[list[float]] = mapped_column(JSON, nullable=False, default=list)
    bake_seconds: Mapped[float] = mapped_column(Float, nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # running|paused|completed|rolled_back|aborted
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    events: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    promotion_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "project/environment" while running or paused (one active rollout per deployment), NULL once over
    active_key: Mapped[str | None] = mapped_column(String(140), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LifecycleCaseRow(Base):
    """One lifecycle case (``core/cases.py``): from the alert that opened it, through the steps a worker
    ran (each with its links: run, version, evidence, promotions), to the rollout that ended it."""

    __tablename__ = "lifecycle_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    environment: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(24), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    steps: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the retrained version
    promotion_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # production's promotion
    rollout_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(24), nullable=True)  # the rollout's end
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A running case's claim holds until then unless its worker renews it; past it, another worker may reclaim it.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # How many times it was claimed: the claim a worker holds (a stale worker's writes name an older one).
    claims: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # "project/environment" while the case is active (one active case per deployment), NULL once over
    active_key: Mapped[str | None] = mapped_column(String(140), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
