"""A deployment's drift as people look at it: per feature, the newest report's reference vs current
distribution and its verdict, most drifted first, and every feature's score over the recent reports
with its threshold. Read from the stored reports (``store/drift_results.py``); computes nothing new."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from harbourmaster.core.drift import Distribution
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor
from harbourmaster.store import drift_results
from harbourmaster.store.tables import DriftResultRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

MAX_REPORTS = 200


class FeaturePoint(BaseModel):
    """One report's measure of one feature."""

    computed_at: datetime
    report_id: str
    statistic: float | None
    score: float
    drifted: bool


class FeatureView(BaseModel):
    """A feature (or the prediction) in the newest report, and its series over the recent ones."""

    feature: str
    kind: str  # feature | prediction
    feature_kind: str | None  # numeric | categorical
    method: str | None
    statistic: float | None
    threshold: float | None
    score: float  # 1.0 at the threshold
    drifted: bool
    note: str | None
    quality: dict[str, Any]
    distribution: Distribution | None  # None: sensitive, or a report stored before distributions were kept
    history: list[FeaturePoint]  # oldest first


class DatasetPoint(BaseModel):
    computed_at: datetime
    report_id: str
    drifted_share: float
    drift_share: float
    drifted: bool
    rows: int


class DriftOverview(BaseModel):
    """The drift page's data; ``latest`` is None when the deployment has no stored report."""

    project: str
    environment: str
    latest: DatasetPoint | None
    version: int | None
    window: str | None
    window_start: datetime | None
    window_end: datetime | None
    features: list[FeatureView]  # most drifted first
    dataset: list[DatasetPoint]  # oldest first
    reports: int


class DriftViewService:
    """Reads stored drift reports for the console."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def overview(self, actor: Actor, project: str, environment: str, *, reports: int = 30) -> DriftOverview:
        """The newest report per feature, most drifted first, and the last ``reports`` reports' series."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)  # a typo is named
        reports = max(1, min(int(reports), MAX_REPORTS))
        with self._platform.db.reader() as session:
            self._platform.registry.project_row(session, project)  # an unknown project is named
            datasets, series, latest = drift_results.recent_reports(session, project, environment, reports)
        return _overview(project, environment, datasets, series, latest)


def _overview(
    project: str, environment: str, datasets: list[Any], series: list[Any], latest: list[DriftResultRow]
) -> DriftOverview:
    if not latest:
        return DriftOverview(
            project=project,
            environment=environment,
            latest=None,
            version=None,
            window=None,
            window_start=None,
            window_end=None,
            features=[],
            dataset=[],
            reports=0,
        )
    history: dict[str, list[FeaturePoint]] = {}
    dataset = [_dataset_point(row) for row in reversed(datasets)]  # oldest first
    for row in reversed(series):
        history.setdefault(row.feature, []).append(
            FeaturePoint(
                computed_at=row.computed_at,
                report_id=row.report_id,
                statistic=row.statistic,
                score=row.score,
                drifted=row.drifted,
            )
        )
    features = [_feature(row, history.get(row.feature, [])) for row in latest if row.kind != "dataset"]
    features.sort(key=lambda f: (f.kind != "feature", not f.drifted, -f.score, f.feature))
    head = latest[0]  # the newest report
    return DriftOverview(
        project=project,
        environment=environment,
        latest=dataset[-1] if dataset and dataset[-1].report_id == head.report_id else None,
        version=head.version,
        window=head.window,
        window_start=head.window_start,
        window_end=head.window_end,
        features=features,
        dataset=dataset,
        reports=len({row.report_id for row in datasets} | {row.report_id for row in series}),
    )


def _dataset_point(row: Any) -> DatasetPoint:
    return DatasetPoint(
        computed_at=row.computed_at,
        report_id=row.report_id,
        drifted_share=row.statistic or 0.0,
        drift_share=row.threshold or 0.0,
        drifted=row.drifted,
        rows=row.rows,
    )


def _feature(row: DriftResultRow, history: list[FeaturePoint]) -> FeatureView:
    details = row.details or {}
    raw = details.get("distribution")
    return FeatureView(
        feature=row.feature,
        kind=row.kind,
        feature_kind=details.get("feature_kind"),
        method=row.method,
        statistic=row.statistic,
        threshold=row.threshold,
        score=row.score,
        drifted=row.drifted,
        note=details.get("note"),
        quality=details.get("quality") or {},
        distribution=Distribution.model_validate(raw) if isinstance(raw, dict) else None,
        history=history,
    )
