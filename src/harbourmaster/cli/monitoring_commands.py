"""Monitoring commands: ``harbourmaster drift`` (a deployment's drift report or its stored time series),
``harbourmaster quality`` (its model quality once ground truth arrives), ``harbourmaster evidence``
(drift and quality evidence about a version for the promotion gates of an environment),
``harbourmaster sla`` (its service levels against the environment's SLA) and ``harbourmaster
prometheus-rules`` (the same SLAs as Prometheus alerting rules).

Works embedded or against a control-plane server (``--url/--token``); either way the
report is computed where the prediction log and the reference (or the traffic samples) live.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    from datetime import datetime

    from harbourmaster.core.drift import DriftReport, FeatureDrift
    from harbourmaster.core.quality import QualityReport
    from harbourmaster.core.sla import SlaReport

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, test, prod ...).")]


def _pairs(values: list[str], what: str) -> tuple[str | None, dict[str, str]]:
    """``VALUE`` (every feature) or ``FEATURE=VALUE`` entries: (the global one, per feature)."""
    everyone: str | None = None
    per_feature: dict[str, str] = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep:
            everyone = value.strip()
        elif not name.strip() or not setting.strip():
            raise InvalidInputError(f"--{what} {value!r}: expected FEATURE={what.upper()} or {what.upper()}")
        else:
            per_feature[name.strip()] = setting.strip()
    return everyone, per_feature


def _threshold(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInputError(f"--threshold {value!r} is not a number", "e.g. --threshold 0.2 or age=0.01") from None


def drift_options(methods: list[str], thresholds: list[str], drift_share: float | None) -> dict[str, Any]:
    """The command line's drift settings as a request's ``options``."""
    from harbourmaster.core.drift import parse_method

    options: dict[str, Any] = {}
    method, feature_methods = _pairs(methods, "method")
    threshold, feature_thresholds = _pairs(thresholds, "threshold")
    if method:
        options["method"] = parse_method(method, "--method").value
    if threshold:
        options["threshold"] = _threshold(threshold)
    if drift_share is not None:
        options["drift_share"] = drift_share
    features: dict[str, dict[str, Any]] = {}
    for name, value in feature_methods.items():
        features.setdefault(name, {})["method"] = parse_method(value, f"--method {name}").value
    for name, value in feature_thresholds.items():
        features.setdefault(name, {})["threshold"] = _threshold(value)
    prediction = features.pop("__prediction__", None)
    if prediction:
        options["prediction"] = prediction
    if features:
        options["features"] = features
    return options


def _quality(feature: FeatureDrift) -> str:
    q = feature.quality
    parts = []
    if q.missing_current is not None and q.missing_current > 0:
        parts.append(f"missing {q.missing_current:.1%}")
    if q.out_of_range:
        parts.append(f"out of range {q.out_of_range:.1%}")
    if q.unseen:
        parts.append(f"unseen {q.unseen:.1%} ({', '.join(q.unseen_values)})")
    return "; ".join(parts) or "-"


def _row(rank: int | str, feature: FeatureDrift) -> tuple[Any, ...]:
    return (
        rank,
        feature.feature,
        feature.kind,
        feature.method.value if feature.method else "-",
        output.number(feature.statistic),
        output.number(feature.threshold),
        "DRIFT" if feature.drifted else ("-" if feature.statistic is None else "ok"),
        f"{feature.score:.2f}",
        _quality(feature),
        feature.note or "",
    )


def _rows_span(rows: int, start: datetime | None, end: datetime | None, noun: str = "rows") -> str:
    """A window's row count and time span, or "no rows" said once ("(0 rows, no rows)" before)."""
    if not rows:
        return f"no {noun}"
    return f"{rows} {noun}, {output.when(start)} .. {output.when(end)}"


def show_report(report: DriftReport) -> None:
    measured = [f for f in report.features if f.statistic is not None]
    verdict = "DRIFTED" if report.drifted else "no dataset drift"
    span = _rows_span(report.rows, report.window_start, report.window_end)
    served = f" (answered by v{report.served_version})" if report.served_version not in (None, report.version) else ""
    output.console.print(
        f"{report.project} in {report.environment}, v{report.version}{served}, window {report.window} "
        f"({span}) against its reference {report.reference} of {report.reference_rows} rows"
    )
    output.console.print(
        f"{verdict}: {len(report.drifted_features)} of {len(measured)} features drift "
        f"(share {report.drifted_share:.2f}, drifts at {report.drift_share:.2f})"
        + (f": {', '.join(report.drifted_features)}" if report.drifted_features else "")
    )
    rows = [_row(i + 1, f) for i, f in enumerate(report.features)]
    if report.prediction is not None:
        rows.append(_row("out", report.prediction))
    columns = ("#", "feature", "kind", "method", "statistic", "threshold", "drift", "score", "data quality", "note")
    output.table(None, columns, rows)
    for note in report.notes:
        output.console.print(f"note: {note}")
    output.console.print(
        f"report {report.id} stored; its series: harbourmaster drift {report.project} "
        f"--env {report.environment} --history"
    )


def drift(
    project: str,
    env: EnvOption = "dev",
    window: Annotated[
        str | None, typer.Option(help="N rows (5000), a duration (30m, 6h, 1d) or a range (A..B). Default 1d.")
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(help="METHOD or FEATURE=METHOD: ks, chisquare, z, wasserstein, jensenshannon, psi."),
    ] = None,
    threshold: Annotated[list[str] | None, typer.Option(help="THRESHOLD or FEATURE=THRESHOLD.")] = None,
    drift_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Share of drifted features that drifts the data.")
    ] = None,
    reference_version: Annotated[
        int | None, typer.Option(min=1, help="Measure against this version's reference (default: the champion's).")
    ] = None,
    history: Annotated[bool, typer.Option("--history", help="Show the stored series instead of a new report.")] = False,
    feature: Annotated[
        str | None, typer.Option(help="With --history: one feature's series (__dataset__: verdicts).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="With --history: rows to show.")] = 50,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Data drift of PROJECT's deployment in an environment: its window of the prediction log against the
    served version's reference, per feature (ranked, most drift first), the prediction and a verdict.

    Methods and thresholds default to the project's [monitoring.drift] settings, then to Evidently's
    defaults; every report is stored as a time series (see --history).
    """
    _check_mode(history, feature, window, method, threshold, drift_share, reference_version)
    with client(url, token) as hm:
        if history:
            items = hm.drift_history(project, env, feature=feature, limit=limit)
            if json:
                return output.print_json(items)
            if not items:
                output.console.print(
                    f"No stored drift reports of {project} in {env} yet: harbourmaster drift {project} --env {env} "
                    "measures and stores one."
                )
                return None
            output.table(
                f"drift of {project} in {env}",
                ("computed", "version", "window", "rows", "feature", "method", "statistic", "threshold", "drift"),
                [
                    (
                        output.when(i.computed_at),
                        f"v{i.version}",
                        i.window,
                        i.rows,
                        i.feature,
                        i.method or "-",
                        output.number(i.statistic),
                        output.number(i.threshold),
                        "DRIFT" if i.drifted else "ok",
                    )
                    for i in items
                ],
            )
            return None
        options = drift_options(method or [], threshold or [], drift_share) or None
        report = hm.drift(project, env, window, options, reference_version)
    if json:
        return output.print_json(report)
    show_report(report)
    return None


def _check_mode(history: bool, feature: str | None, *report_options: object) -> None:
    """Refuse options of the other mode, which would otherwise be ignored without a word."""
    if feature is not None and not history:
        raise InvalidInputError(
            "--feature picks a stored series; it needs --history",
            "add --history to see one feature's series, or drop --feature for a new report",
        )
    names = ("--window", "--method", "--threshold", "--drift-share", "--reference-version")
    given = [name for name, value in zip(names, report_options, strict=True) if value not in (None, [])]
    if history and given:
        raise InvalidInputError(
            f"{', '.join(given)}: option(s) of a new report, which --history does not make",
            "drop --history to measure with these options, or drop them to see the series",
        )


def show_quality(report: QualityReport) -> None:
    span = _rows_span(report.rows, report.window_start, report.window_end, "answered rows")
    output.console.print(
        f"{report.project} in {report.environment}, v{report.version} ({report.task}), window {report.window} ({span})"
    )
    unknown = f", {report.unknown_labels} of an unknown class" if report.unknown_labels else ""
    output.console.print(
        f"{report.labelled} labelled, {report.unlabelled} waiting for ground truth{unknown}; "
        f"judged from {report.min_labelled_rows} labelled rows, tolerance {report.tolerance:.0%} of held out"
    )
    if not report.judged:
        verdict = "NOT JUDGED: too few labelled rows"
    else:
        dropped = ", ".join(m.metric for m in report.metrics if m.degraded)
        verdict = (
            f"DEGRADED: {dropped} dropped beyond {report.tolerance:.0%} of held out"
            if report.degraded
            else "ok: no metric dropped beyond tolerance"
        )
    output.console.print(verdict)
    if report.metrics:
        output.table(
            None,
            ("metric", "window", "held out", "drop", "verdict"),
            [
                (
                    m.metric,
                    output.number(m.value),
                    output.number(m.baseline),
                    "-" if m.drop is None else f"{m.drop:+.1%}",
                    "DROP" if m.degraded else ("-" if m.drop is None or not report.judged else "ok"),
                )
                for m in report.metrics
            ],
        )
    for note in report.notes:
        output.console.print(f"note: {note}")
    output.console.print(f"report {report.id} stored")


def quality(
    project: str,
    env: EnvOption = "dev",
    window: Annotated[
        str | None, typer.Option(help="N rows (5000), a duration (30m, 6h, 1d) or a range (A..B). Default 1d.")
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="The rows this version answered (a challenger); default the champion.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Model quality of PROJECT's deployment in an environment: the window's predictions joined to the ground
    truth sent as feedback, scored (accuracy, F1, ROC AUC or RMSE, MAE, R2) against the held-out metrics.

    Window, tolerance and the labelled rows needed default to the project's [monitoring.quality] settings.
    """
    with client(url, token) as hm:
        report = hm.quality(project, env, window, version)
    if json:
        return output.print_json(report)
    show_quality(report)
    return None


def evidence(
    project: str,
    version: str,
    to: Annotated[str, typer.Option("--to", help="The environment the version is to be promoted into.")],
    check: Annotated[
        list[str] | None, typer.Option(help="drift, quality or drift_fixed (repeat; default drift and quality).")
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="The window of the environment's traffic (default: the project's).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Record evidence about VERSION for promotion into an environment, against its champion there:
    drift (the version's reference drifts less from the environment's current window than the champion's)
    and quality (not worse than the champion beyond tolerance). Evidence gates read it; promote --check shows it.
    """
    with client(url, token) as hm:
        items = hm.record_evidence(project, version, to, check or None, window)
    if json:
        return output.print_json(items)
    output.table(
        f"evidence about {project} v{items[0].version} for {to}" if items else None,
        ("#", "check", "verdict", "summary", "reports"),
        [(e.id, e.check, "PASSED" if e.passed else "FAILED", e.summary, ", ".join(e.reports)) for e in items],
    )
    output.console.print(f"evidence gates read it: harbourmaster promote {project} {version} --to {to} --check")
    return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _burn(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def show_sla(report: SlaReport) -> None:
    sla = report.sla.model_dump(exclude_none=True)
    output.console.print(
        f"{report.project} in {report.environment}: {report.replicas} replica(s) reported traffic in the last 6h; "
        f"SLA {', '.join(f'{k}={v:g}' for k, v in sla.items()) or 'none set'}"
    )
    objectives = report.objectives
    columns = ["window", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "fallbacks", "slow"]
    columns += [f"burn {name}" for name in objectives]
    rows = []
    for w in report.windows:
        rows.append(
            (
                w.window,
                f"{w.requests:.0f}",
                "-" if w.throughput is None else f"{w.throughput:.3g}",
                _ms(w.p50_ms),
                _ms(w.p95_ms),
                _ms(w.p99_ms),
                _share(w.error_rate),
                _share(w.fallback_rate),
                _share(w.slow_rate),
                *(_burn(w.burn.get(name)) for name in objectives),
            )
        )
    rows.append(
        (
            "SLA",
            "",
            f">= {report.sla.min_rps:g}" if report.sla.min_rps is not None else "-",
            _ms(report.sla.p50_ms),
            _ms(report.sla.p95_ms),
            _ms(report.sla.p99_ms),
            _share(report.sla.error_rate),
            _share(report.sla.fallback_rate),
            "<= 1.00%" if report.sla.p99_ms is not None else "-",
            *("1.00x" for _ in objectives),
        )
    )
    output.table(None, columns, rows)
    for verdict in report.alerts:
        state = f"FIRING ({verdict.severity})" if verdict.firing else "ok"
        output.console.print(
            f"{verdict.alert} burn ({verdict.factor:g}x over {verdict.long_window} and {verdict.short_window}): "
            f"{state}: {verdict.summary}"
        )
    if not objectives:
        output.console.print(
            f"note: the SLA of {report.environment} has no objective with a budget (error_rate, p99_ms, "
            f"fallback_rate): no burn alert; an admin sets one with harbourmaster environments configure "
            f"{report.environment} --file {report.environment}.json"
        )


def sla(
    project: str,
    env: EnvOption = "dev",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Service levels of PROJECT's deployment in an environment: throughput, p50/p95/p99 latency, error,
    fallback and slow-request rates over 5m, 30m, 1h and 6h against the environment's SLA, the error
    budgets' burn rates, and the fast (14.4x over 1h and 5m) and slow (6x over 6h and 30m) burn alerts.

    Computed from the counters the replicas send in their heartbeats (see docs/monitoring.md).
    """
    with client(url, token) as hm:
        report = hm.sla(project, env)
    if json:
        return output.print_json(report)
    show_sla(report)
    return None


def prometheus_rules(
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Only this environment's alerts (default: every one).")
    ] = None,
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the rules to this file (default: standard output).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Prometheus alerting rules (YAML) expressing the environments' SLAs, for a Prometheus that scrapes
    the replicas' /metrics: the same burn-rate alerts as the SLA monitor. Check them with
    `promtool check rules FILE`."""
    with client(url, token) as hm:
        text = hm.prometheus_rules(env)
    if output_file is None:
        print(text, end="")
        return
    try:
        output_file.write_text(text)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {output_file}: {exc.strerror or exc}", "pass --output a writable file path"
        ) from None
    output.console.print(f"wrote {text.count('- alert:')} alerting rules to {output_file}")


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the ``harbourmaster`` app."""
    app.command()(drift)
    app.command()(quality)
    app.command()(evidence)
    app.command()(sla)
    app.command("prometheus-rules")(prometheus_rules)
