"""Page 4, Drift: per feature the reference vs current distribution (overlaid histogram bars for a
numeric feature, bars per category), drift scores over the recent reports with the threshold, most
drifted first. From the stored drift reports (the drift monitor and ``harbourmaster drift`` write them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from harbourmaster.console import charts
from harbourmaster.console.render import render
from harbourmaster.console.session import platform_of, session_actor
from harbourmaster.services.actors import Actor
from harbourmaster.services.drift_view import DriftOverview, FeatureView

router = APIRouter()
NAV: tuple[str, str] | None = ("Drift", "/drift")
FEATURES_PER_PAGE = 12
SCORED_LINES = 8  # features drawn in the scores-over-time chart (the most drifted)


@router.get("/drift", response_class=HTMLResponse)
async def drift_index(request: Request, actor: Actor = Depends(session_actor)) -> HTMLResponse:
    states = await run_in_threadpool(platform_of(request).deployments.list, actor)
    return render(request, "drift_index.html", states=states)


@router.get("/drift/{project}/{environment}", response_class=HTMLResponse)
async def drift(
    request: Request,
    project: str,
    environment: str,
    page: int = Query(1, ge=1),
    reports: int = Query(30, ge=1, le=200),
    actor: Actor = Depends(session_actor),
) -> HTMLResponse:
    overview = await run_in_threadpool(
        platform_of(request).drift_view.overview, actor, project, environment, reports=reports
    )
    return render(request, "drift.html", **context(overview, page, reports))


def context(overview: DriftOverview, page: int, reports: int) -> dict[str, Any]:
    """The template's values: a page of features with their distribution charts, and the series."""
    pages = max(1, -(-len(overview.features) // FEATURES_PER_PAGE))
    page = min(page, pages)
    shown = overview.features[(page - 1) * FEATURES_PER_PAGE : page * FEATURES_PER_PAGE]
    labels = [charts.clock(point.computed_at, seconds=True) for point in overview.dataset]
    dataset_chart = charts.line_chart(
        labels,
        [("drifted share %", [100 * p.drifted_share for p in overview.dataset])],
        "% of features drifted",
        limits=[("threshold", 100 * overview.dataset[-1].drift_share if overview.dataset else None)],
    )
    scored = [f for f in overview.features if f.kind == "feature" and f.history][:SCORED_LINES]
    scores_chart = charts.line_chart(
        labels,
        [(f.feature, _aligned(f, overview)) for f in scored],
        "score (1 = threshold)",
        limits=[("threshold", 1.0)],
    )
    distributions = {f.feature: _distribution_chart(f) for f in shown if f.distribution is not None}
    return {
        "overview": overview,
        "features": shown,
        "page": page,
        "pages": pages,
        "reports": reports,
        "chart_dataset": dataset_chart,
        "chart_scores": scores_chart,
        "scored": [f.feature for f in scored],
        "distributions": distributions,
        "canvas_ids": {f.feature: f"dist-{i}" for i, f in enumerate(shown)},
    }


def _aligned(feature: FeatureView, overview: DriftOverview) -> list[float | None]:
    """A feature's scores on the reports' axis (None where a report did not measure it)."""
    by_report = {point.report_id: point.score for point in feature.history}
    return [by_report.get(point.report_id) for point in overview.dataset]


def _distribution_chart(feature: FeatureView) -> dict[str, Any]:
    distribution = feature.distribution
    assert distribution is not None
    labels = charts.bin_labels(distribution.edges) if distribution.kind == "numeric" else distribution.labels
    return charts.comparison_chart(labels, distribution.reference, distribution.current)
