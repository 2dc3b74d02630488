"""The drift monitor: drifted production traffic raises an alert naming the drifted features, linked to its
stored report; clean traffic resolves it; too small a window is not judged; a deployment whose drift cannot be
measured says why; the cadence keeps the monitor from recomputing on every run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform

from .helpers import OWNER, PROJECT, current_frame, log_rows, register_and_deploy

DRIFT = {"window": "600", "drift_share": 0.3}  # income and region of five monitored features drift


@pytest.fixture
def watched(settings: Settings) -> Iterator[Platform]:
    """A platform whose drift monitor measures on every run (no cadence)."""
    platform = Platform(replace(settings, monitoring=replace(settings.monitoring, drift_every=0)))
    yield platform
    platform.close()


def _drift_alerts(platform: Platform) -> dict[str, object]:
    return {a.rule: a for a in platform.alerts.list(OWNER, include_resolved=True) if a.monitor == "drift"}


def test_drifted_traffic_raises_an_alert_naming_the_features_and_clean_traffic_resolves_it(watched: Platform) -> None:
    version = register_and_deploy(watched, drift=DRIFT)
    earlier = datetime.now(UTC) - timedelta(minutes=30)
    log_rows(watched, current_frame(600, shift=1.0), version=version, ts=earlier)

    watched.monitoring.run_once()
    alert = _drift_alerts(watched)["drift.dataset"]
    assert alert.status == "firing" and alert.severity == "warning"
    assert alert.subject == f"{PROJECT}/dev" and alert.project == PROJECT and alert.environment == "dev"
    assert "data drift" in alert.summary and "income" in alert.summary and "region" in alert.summary
    assert "age" not in alert.summary.split(":", 2)[-1].split(";")[0]  # only drifted features are named
    report_id = alert.evidence.removeprefix("drift-report:")
    stored = watched.drift.history(OWNER, PROJECT, "dev", feature="income")
    assert stored and stored[0].report_id == report_id and stored[0].drifted

    log_rows(watched, current_frame(600, seed=5), version=version, ts=earlier + timedelta(minutes=10))
    watched.monitoring.run_once()
    alert = _drift_alerts(watched)["drift.dataset"]
    assert alert.status == "resolved", alert.summary


def test_a_window_with_too_few_rows_is_not_judged(watched: Platform) -> None:
    version = register_and_deploy(watched, drift={**DRIFT, "min_rows": 500})
    log_rows(watched, current_frame(60, shift=1.0), version=version)
    report = watched.monitoring.run_once()
    assert "drift.dataset" not in _drift_alerts(watched)
    window = [r for r in report.results if r.monitor == "drift" and r.metric == "window"]
    assert len(window) == 1 and "fewer than the 500 needed" in window[0].summary


def test_a_deployment_whose_drift_cannot_be_measured_says_why(watched: Platform) -> None:
    version = register_and_deploy(watched, drift={"features": {"salary": {"method": "ks"}}})
    log_rows(watched, current_frame(200), version=version)
    watched.monitoring.run_once()
    alert = _drift_alerts(watched)["drift.unmeasurable"]
    assert alert.status == "firing" and "salary" in alert.summary
    assert [run.status for run in watched.monitoring.runs(OWNER) if run.monitor == "drift"] == ["succeeded"]


def test_the_cadence_keeps_the_monitor_from_recomputing(platform: Platform) -> None:
    version = register_and_deploy(platform, drift=DRIFT)
    log_rows(platform, current_frame(600, shift=1.0), version=version)
    platform.monitoring.run_once()
    platform.monitoring.run_once()  # within HARBOURMASTER_DRIFT_EVERY (900 s): not measured again
    reports = {point.report_id for point in platform.drift.history(OWNER, PROJECT, "dev", feature="__dataset__")}
    assert len(reports) == 1
