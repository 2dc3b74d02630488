"""Data drift of a deployment: its window of the prediction log against its served version's reference.

One use case, ``report``: check the caller may read the environment, find the
champion the deployment serves, read its reference (the bundle's sample, or its
histogram profile for older bundles) verified by digest, read the window of the
prediction log typed in bulk with DuckDB, compute (``core/drift.py``), store the
per-feature results (``drift_results``), and audit the read of a guarded
environment. ``history`` reads the stored time series back. Monitors and the
``evidence`` gate build on both.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from harbourmaster.bundle.builder import REFERENCE_SAMPLE_FILE
from harbourmaster.bundle.storage import read_bundle_file, read_manifest
from harbourmaster.core.drift import (
    PREDICTION,
    DriftReport,
    DriftSettings,
    Kind,
    Reference,
    compute_drift,
)
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.log_layout import QUERY_TYPES
from harbourmaster.core.permissions import Permission
from harbourmaster.core.profile import ReferenceProfile
from harbourmaster.core.schema import InputSchema, OutputSchema
from harbourmaster.errors import BundleIntegrityError, InvalidInputError, NotFoundError, parse_settings
from harbourmaster.services.actors import Actor
from harbourmaster.store import drift_results
from harbourmaster.store.prediction_log import PredictionLog
from harbourmaster.store.tables import DeploymentRow, DriftResultRow, ProjectRow

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.services.platform import Platform


class DriftResultInfo(BaseModel):
    """One stored point of a deployment's drift time series."""

    report_id: str
    project: str
    environment: str
    version: int
    window: str
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    feature: str
    kind: str
    method: str | None
    statistic: float | None
    threshold: float | None
    drifted: bool
    score: float
    details: dict[str, Any]
    computed_at: datetime


def settings_from(value: dict[str, Any] | DriftSettings | None) -> DriftSettings:
    """Request options as ``DriftSettings``; an ``InvalidInputError`` naming each bad option."""
    return parse_settings(
        DriftSettings,
        value,
        "options",
        "methods: ks, chisquare, z, wasserstein, jensenshannon, psi; thresholds > 0; drift_share in (0, 1]",
        prefix="drift options: ",
    )


class DriftService:
    """Drift reports of deployments, and their stored time series."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def report(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        window: str | None = None,
        options: dict[str, Any] | DriftSettings | None = None,
        reference_version: int | None = None,
        now: datetime | None = None,
    ) -> DriftReport:
        """Compute, store and return the drift report of ``project`` in ``environment`` over ``window``
        (default: the project's ``[monitoring.drift] window``, else the last day). ``options`` override
        the project's drift settings for this report. ``reference_version`` measures the same window
        (the rows the champion answered) against another version's reference instead, e.g. a candidate's
        (the evidence "the candidate drifts less than the champion on the current prod window");
        prediction drift is then not measured (the outputs in the window are the champion's)."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        with self._platform.db.reader() as session:
            deployment, project_row = self._deployment(session, project, environment)
            champion = deployment.champion
            if champion is None:
                raise NotFoundError(
                    f"{project} has no champion in {environment}",
                    f"deploy a version: harbourmaster deploy {project} VERSION --env {environment}",
                )
            served = champion.number
            measured = champion
            if reference_version is not None and reference_version != served:
                measured = self._platform.registry.version_row(session, project, reference_version)
            number, digest = measured.number, measured.digest
            input_schema = InputSchema.model_validate(measured.input_schema)
            output_schema = OutputSchema.model_validate(measured.output_schema)
            stored = _stored_settings(project_row)
        settings = stored.merged(settings_from(options)) if options else stored
        span = parse_window(window or settings.window, now)
        reference = self._reference(digest, input_schema)
        self._check_features(settings, reference)
        columns = {
            name: QUERY_TYPES[input_schema.column(name).dtype]  # type: ignore[union-attr]
            for name in reference.kinds
            if not _sensitive(reference.profile, name)
        }
        prediction_kind = _output_kind(output_schema) if number == served else None
        frame = PredictionLog(self._platform.artifacts).window(
            environment,
            project,
            version=served,
            columns=columns,
            output=_output_type(output_schema, prediction_kind) if prediction_kind else None,
            last_rows=span.last_rows,
            start=span.start,
            end=span.end,
        )
        features, prediction, share, drifted = compute_drift(frame, reference, settings, prediction_kind)
        notes = []
        if frame.empty:
            notes.append(f"the window {span.text} holds no logged prediction of v{served}: nothing to measure")
        if number != served:
            notes.append(f"the rows v{served} answered, against the reference of v{number}")
        if reference.sample is None:
            notes.append(f"v{number} has no reference sample: binned tests on its histogram profile")
        report = DriftReport(
            id=uuid.uuid4().hex,
            project=project,
            environment=environment,
            version=number,
            served_version=served,
            window=span.text,
            window_start=_instant(frame["ts"].min()) if not frame.empty else span.start,
            window_end=_instant(frame["ts"].max()) if not frame.empty else span.end,
            rows=len(frame),
            reference=reference.source,
            reference_rows=reference.rows,
            drift_share=settings.drift_share,
            drifted_share=share,
            drifted=drifted,
            features=features,
            prediction=prediction,
            notes=notes,
            computed_at=datetime.now(UTC),
        )
        with self._platform.db.transaction() as session:
            drift_results.save_report(session, report)
            if self._platform.access.is_guarded(environment):
                self._platform.audit.record(
                    session,
                    actor,
                    "drift.report",
                    project,
                    environment=environment,
                    details={"report": report.id, "window": report.window, "rows": report.rows},
                )
        return report

    def history(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        feature: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[DriftResultInfo]:
        """Stored drift results of a deployment, newest first (``feature="__dataset__"``: the verdicts)."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        with self._platform.db.reader() as session:
            self._project(session, project)
            if feature is not None:
                measured = drift_results.measured_features(session, project, environment)
                if measured and feature not in measured:
                    raise InvalidInputError(
                        f"the drift reports of {project} in {environment} have no series of feature {feature!r}",
                        f"use one of: {', '.join(measured)}",
                    )
            rows = drift_results.series(session, project, environment, feature=feature, since=since, limit=limit)
            return [_info(row) for row in rows]

    def project_settings(self, project: str) -> DriftSettings:
        """The project's own ``[monitoring.drift]`` settings (defaults where it has none)."""
        with self._platform.db.reader() as session:
            return _stored_settings(self._project(session, project))

    # -- helpers ---------------------------------------------------------------------

    def _project(self, session: Any, project: str) -> ProjectRow:
        project_row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
        if project_row is None:
            raise NotFoundError(f"project {project!r} does not exist", "list projects with: harbourmaster projects")
        return project_row

    def _deployment(self, session: Any, project: str, environment: str) -> tuple[DeploymentRow, ProjectRow]:
        project_row = self._project(session, project)
        deployment = session.scalar(
            select(DeploymentRow).where(
                DeploymentRow.project_id == project_row.id, DeploymentRow.environment == environment
            )
        )
        if deployment is None:
            raise NotFoundError(
                f"{project} is not deployed in {environment}",
                f"deploy it: harbourmaster deploy {project} VERSION --env {environment}",
            )
        return deployment, project_row

    def _reference(self, digest: str, input_schema: InputSchema) -> Reference:
        """The served version's profile and sample, each verified against the bundle digest."""
        import pyarrow.parquet as pq

        store = self._platform.artifacts
        manifest = read_manifest(store, digest)
        try:
            profile = ReferenceProfile.model_validate(manifest.profile)
        except ValidationError as exc:
            raise BundleIntegrityError(
                f"bundle {digest[:12]}… has no usable reference profile: {exc.errors()[0]['msg']}",
                "register the version again to give it a profile",
            ) from None
        kinds: dict[str, Kind] = {
            column.name: "numeric" if column.dtype in ("integer", "float", "datetime") else "categorical"
            for column in input_schema.columns
            if column.name in profile.features
        }
        raw = read_bundle_file(store, digest, REFERENCE_SAMPLE_FILE)
        sample = None
        if raw is not None:
            sample = pq.read_table(io.BytesIO(raw)).to_pandas()
            for column in input_schema.columns:
                if column.dtype == "datetime" and column.name in sample:
                    sample[column.name] = _epoch_seconds(sample[column.name])
        return Reference(profile=profile, kinds=kinds, sample=sample)

    @staticmethod
    def _check_features(settings: DriftSettings, reference: Reference) -> None:
        unknown = sorted(set(settings.features) - set(reference.kinds))
        if unknown:
            raise InvalidInputError(
                f"drift settings name feature(s) the served version does not have: {', '.join(unknown)}",
                f"its features are: {', '.join(reference.kinds)}",
            )


def _stored_settings(project_row: ProjectRow) -> DriftSettings:
    return settings_from((project_row.settings or {}).get("monitoring", {}).get("drift", {}))


def _sensitive(profile: ReferenceProfile, name: str) -> bool:
    feature = profile.features.get(name)
    return feature is not None and feature.sensitive


def _output_kind(schema: OutputSchema) -> Kind:
    if schema.task == "regression" or (schema.task == "other" and schema.dtype in ("float", "integer")):
        return "numeric"
    return "categorical"


def _output_type(schema: OutputSchema, kind: Kind) -> str:
    if kind == "numeric":
        return "DOUBLE"
    return "BOOLEAN" if schema.dtype == "boolean" else "VARCHAR"


def _epoch_seconds(values: pd.Series) -> pd.Series:
    import numpy as np
    import pandas as pd

    stamps = pd.to_datetime(values, errors="coerce", utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.astype("float64").where(stamps.notna(), np.nan)


def _instant(value: Any) -> datetime | None:
    import pandas as pd

    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().astimezone(UTC)


def _info(row: DriftResultRow) -> DriftResultInfo:
    return DriftResultInfo(
        report_id=row.report_id,
        project=row.project,
        environment=row.environment,
        version=row.version,
        window=row.window,
        window_start=row.window_start,
        window_end=row.window_end,
        rows=row.rows,
        feature=row.feature,
        kind=row.kind,
        method=row.method,
        statistic=row.statistic,
        threshold=row.threshold,
        drifted=row.drifted,
        score=row.score,
        details=row.details,
        computed_at=row.computed_at,
    )


__all__ = ["PREDICTION", "DriftResultInfo", "DriftService", "settings_from"]
