"""The demo's monitoring chapter: production traffic drifts, the monitors say so and show the replica's
health, and the deployment's service levels are read against its SLA.

A replica serves dev; first traffic like the training data, then traffic whose "mean"
measurements grew by a quarter (a new scanner calibration, say). After each batch the
monitors run once, as ``harbourmaster monitor --once`` does: the drift monitor judges the
last requests against the served version's reference, and the infrastructure monitors
read the replica's heartbeats.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx
import pandas as pd

from harbourmaster.config import Settings
from harbourmaster.core.alerts import Status
from harbourmaster.services.actors import Actor
from harbourmaster.services.monitoring import RunReport
from harbourmaster.services.platform import Platform
from harbourmaster.services.sandbox import open_embedded
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog

NORMAL_REQUESTS = 150
DRIFTED_REQUESTS = 300
DRIFT_FACTOR = 1.25  # the "mean ..." measurements of drifted requests, a quarter larger
_SHOWN_FEATURES = 6


def run_monitoring_chapter(story: Any, settings: Settings, project: str, version: int, features: pd.DataFrame) -> None:
    """Serve ``version`` in dev, send normal then drifted traffic, and show what the monitors find."""
    story.step("Monitoring: production data drifts, and an alert names the features")
    watched = replace(settings, monitoring=replace(settings.monitoring, drift_every=0))  # judge every batch now
    platform, _ = open_embedded(watched, purpose="the demo's monitoring chapter")
    try:
        options = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.5, capture_flush_seconds=0.3)
        server = ServerThread(platform, "dev", options).start()
        try:
            url = f"{server.url}/v1/projects/{project}/predict"
            log = PredictionLog(platform.artifacts)
            normal = features.sample(NORMAL_REQUESTS, replace=True, random_state=11)
            drifted = features.sample(DRIFTED_REQUESTS, replace=True, random_state=12)
            grown = [column for column in drifted.columns if column.startswith("mean ")]
            drifted[grown] = drifted[grown] * DRIFT_FACTOR
            with httpx.Client(timeout=30) as client:
                _send(client, url, normal, log, project)
                story.say(
                    f"{NORMAL_REQUESTS} requests like the training data; the drift monitor judges the last "
                    "300 requests (\\[monitoring.drift] in harbourmaster.toml)"
                )
                _show_drift(story, platform.monitoring.run_once(deliver=False))
                _send(client, url, drifted, log, project)
                story.say(f"{DRIFTED_REQUESTS} requests whose {len(grown)} 'mean ...' measurements grew by 25%")
                report = platform.monitoring.run_once(deliver=False)
            _show_alerts(story, platform, report)
            _show_health(story, report)
        finally:
            server.stop()  # its last heartbeat carries its final traffic counters
        _show_sla(story, platform, project)
    finally:
        platform.close()


def _send(client: httpx.Client, url: str, rows: pd.DataFrame, log: PredictionLog, project: str) -> None:
    """POST each row, then wait (bounded) until the replica's capture has logged them all."""
    expected = log.count("dev", project) + len(rows)
    for record in rows.to_dict(orient="records"):
        client.post(url, json={name: float(value) for name, value in record.items()}).raise_for_status()
    deadline = time.monotonic() + 30
    while log.count("dev", project) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not log its answers within 30 s")
        time.sleep(0.1)


def _show_drift(story: Any, report: RunReport) -> None:
    for result in report.results:
        if result.monitor == "drift" and result.metric in ("dataset", "window"):
            colour = "red" if result.status != Status.OK else "green"
            story.say(f"drift monitor: [{colour}]{result.summary}[/]")


def _show_alerts(story: Any, platform: Platform, report: RunReport) -> None:
    for change in report.changes:
        if change.change == "firing":
            alert = platform.alerts.get(Actor.system("demo"), change.alert_id)
            story.say(f"[bold]alert #{alert.id}[/] {alert.rule} ({alert.severity}) on {alert.subject}: {alert.summary}")
    dataset = next(
        (r for r in report.results if r.monitor == "drift" and r.metric == "dataset" and r.status != Status.OK), None
    )
    if dataset is not None:
        story.say("most drifted features, drift score (1 = at the threshold; harbourmaster drift shows all):")
        for item in dataset.details.get("drifted_features", [])[:_SHOWN_FEATURES]:
            story.say(f"  {item['feature']:<24} {item['method']:<12} {item['score']:>6.1f}")
    story.say("`harbourmaster alerts` lists it; a server running the monitors sends it to its notifiers")


def _show_sla(story: Any, platform: Platform, project: str) -> None:
    """The deployment's service levels from the counters the replica sent in its heartbeats."""
    report = platform.sla.report(Actor.system("demo"), project, "dev")
    figures = report.window("5m")
    sla = ", ".join(f"{name} {value:g}" for name, value in report.sla.model_dump(exclude_none=True).items())

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    story.say(f"service levels of {project} in dev over the last 5 minutes (harbourmaster sla {project} --env dev):")
    story.say(
        f"  {figures.requests:.0f} requests, p50 {ms(figures.p50_ms)}, p95 {ms(figures.p95_ms)}, "
        f"p99 {ms(figures.p99_ms)}, errors {share(figures.error_rate)}, fallbacks {share(figures.fallback_rate)}; "
        f"SLA of dev: {sla or 'none'}"
    )
    for verdict in report.alerts:
        state = "[red]FIRING[/]" if verdict.firing else "[green]ok[/]"
        windows = f"{verdict.factor:g}x over {verdict.long_window} and {verdict.short_window}"
        story.say(f"  {verdict.alert} burn ({windows}): {state}")


def _show_health(story: Any, report: RunReport) -> None:
    story.say("infrastructure monitors, in the same run:")
    for result in report.results:
        if result.monitor in ("database", "artifact-store", "replica") and result.metric != "reachable":
            story.say(f"  {result.subject:<26} {result.metric:<16} {result.status:<8} {result.summary}")
