"""Drift reports in the metadata database: one row per measured feature, read back as time series."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harbourmaster.core.drift import DriftReport, FeatureDrift
from harbourmaster.store.tables import DriftResultRow

DATASET = "__dataset__"  # the feature name of a report's dataset verdict


def _report_fields(report: DriftReport) -> dict[str, object]:
    """The columns every row of one report shares."""
    return {
        "report_id": report.id,
        "project": report.project,
        "environment": report.environment,
        "version": report.version,
        "window": report.window,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "rows": report.rows,
        "computed_at": report.computed_at,
    }


def _row(report: DriftReport, drift: FeatureDrift, kind: str) -> DriftResultRow:
    return DriftResultRow(
        **_report_fields(report),
        feature=drift.feature,
        kind=kind,
        method=drift.method.value if drift.method else None,
        statistic=drift.statistic,
        threshold=drift.threshold,
        drifted=drift.drifted,
        score=drift.score,
        details={
            "feature_kind": drift.kind,
            "reference": drift.reference,
            "current_values": drift.current_values,
            "quality": drift.quality.model_dump(),
            "note": drift.note,
            "distribution": drift.distribution.model_dump() if drift.distribution else None,
        },
    )


def save_report(session: Session, report: DriftReport) -> None:
    """Add a report's rows: every feature, the prediction (if measured) and the dataset verdict."""
    rows = [_row(report, feature, "feature") for feature in report.features]
    if report.prediction is not None:
        rows.append(_row(report, report.prediction, "prediction"))
    rows.append(
        DriftResultRow(
            **_report_fields(report),
            feature=DATASET,
            kind="dataset",
            method="share",
            statistic=report.drifted_share,
            threshold=report.drift_share,
            drifted=report.drifted,
            score=report.drifted_share / report.drift_share,
            details={
                "reference": report.reference,
                "reference_rows": report.reference_rows,
                "served_version": report.served_version,
                "drifted_features": report.drifted_features,
                "notes": report.notes,
            },
        )
    )
    session.add_all(rows)


def series(
    session: Session,
    project: str,
    environment: str,
    *,
    feature: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[DriftResultRow]:
    """Stored results of a deployment, newest first (one feature's, or every feature's)."""
    query = select(DriftResultRow).where(DriftResultRow.project == project, DriftResultRow.environment == environment)
    if feature is not None:
        query = query.where(DriftResultRow.feature == feature)
    if since is not None:
        query = query.where(DriftResultRow.computed_at >= since)
    query = query.order_by(DriftResultRow.computed_at.desc(), DriftResultRow.id.desc()).limit(limit)
    return list(session.scalars(query))


def measured_features(session: Session, project: str, environment: str) -> list[str]:
    """The features (and ``__dataset__``) that a deployment's stored results have a series of, sorted."""
    query = (
        select(DriftResultRow.feature)
        .where(DriftResultRow.project == project, DriftResultRow.environment == environment)
        .distinct()
    )
    return sorted(session.scalars(query))


def recent_reports(
    session: Session, project: str, environment: str, reports: int = 30
) -> tuple[list[Any], list[Any], list[DriftResultRow]]:
    """A deployment's newest ``reports`` reports, newest report first: their dataset rows (every figure
    but the details), their feature rows (only what a score series needs: thousands of rows at 200
    reports of 30 features), and the newest report's whole rows (with details: distributions, quality,
    notes)."""
    r = DriftResultRow
    newest = (
        select(r.report_id, func.max(r.computed_at).label("at"))
        .where(r.project == project, r.environment == environment)
        .group_by(r.report_id)
        .order_by(func.max(r.computed_at).desc())
        .limit(reports)
        .subquery()
    )
    datasets = list(
        session.execute(
            select(
                r.report_id,
                r.computed_at,
                r.feature,
                r.kind,
                r.statistic,
                r.threshold,
                r.drifted,
                r.score,
                r.rows,
                r.version,
                r.window,
                r.window_start,
                r.window_end,
            )
            .join(newest, newest.c.report_id == r.report_id)
            .where(r.kind == "dataset")
            .order_by(r.computed_at.desc(), r.id)
        )
    )
    features = list(
        session.execute(
            select(r.report_id, r.computed_at, r.feature, r.kind, r.statistic, r.drifted, r.score)
            .join(newest, newest.c.report_id == r.report_id)
            .where(r.kind != "dataset")
            .order_by(r.computed_at.desc(), r.id)
        )
    )
    if not datasets and not features:
        return [], [], []
    head = max((rows[0] for rows in (datasets, features) if rows), key=lambda row: row.computed_at)
    latest = list(session.scalars(select(r).where(r.report_id == head.report_id).order_by(r.id)))
    return datasets, features, latest
