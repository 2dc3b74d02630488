"""Prometheus alerting rules expressing the environments' SLAs, for people who scrape the replicas'
``/metrics`` with their own Prometheus. Pure logic: environments in, a rule file (YAML) out.

The rules compute what the SLA monitor computes (``core/sla.py``) from the metrics
``serving/metrics.py`` exports: recording rules give per-deployment rates over the four
windows; per environment, the fast (14.4x over 1 h and 5 min, critical) and slow (6x over
6 h and 30 min, warning) burn alerts for each objective with a budget, labelled with
``slo`` (errors, latency, fallbacks), and a low-throughput warning when ``min_rps`` is set.
The latency objective counts requests slower than ``p99_ms`` with the same linear
interpolation inside the bucket as the monitor (exact when ``p99_ms`` is a bucket bound).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from harbourmaster.core.environments import Environment
from harbourmaster.core.log_layout import UNROUTED
from harbourmaster.core.sla import (
    BURN_ALERTS,
    FALLBACK_PATHS,
    NO_LATENCY_PATHS,
    NOT_PREDICTIONS,
    WINDOWS,
    bracket,
    budget_of,
    objectives,
)

REQUESTS = "harbourmaster_requests_total"
LATENCY = "harbourmaster_request_latency_seconds"
ALERT_NAMES = {"fast": "HarbourmasterSLOFastBurn", "slow": "HarbourmasterSLOSlowBurn"}
LOW_THROUGHPUT = "HarbourmasterSLOLowThroughput"
BY = "sum by (environment, project)"


def _record(name: str, window: str) -> str:
    return f"harbourmaster:sla_{name}:rate{window}"


def _selector(extra: str = "") -> str:
    return f'project!="",project!="{UNROUTED}"' + (f",{extra}" if extra else "")


def recording_rules() -> list[dict[str, Any]]:
    """Per deployment (environment, project) and window: request, error, fallback and timed-request
    rates, and the latency buckets' rates (by ``le``)."""
    predictions = _selector(f'path!~"{"|".join(NOT_PREDICTIONS)}"')
    timed = _selector(f'path!~"{"|".join(NO_LATENCY_PATHS)}"')
    rules: list[dict[str, Any]] = []
    for window in WINDOWS:
        rules += [
            {"record": _record("requests", window), "expr": f"{BY} (rate({REQUESTS}{{{predictions}}}[{window}]))"},
            {
                "record": _record("errors", window),
                "expr": f'{BY} (rate({REQUESTS}{{{predictions},status=~"5.."}}[{window}]))',
            },
            {
                "record": _record("fallbacks", window),
                "expr": f'{BY} (rate({REQUESTS}{{{predictions},path=~"{"|".join(FALLBACK_PATHS)}"}}[{window}]))',
            },
            {"record": _record("timed", window), "expr": f"{BY} (rate({LATENCY}_count{{{timed}}}[{window}]))"},
            {
                "record": _record("latency_bucket", window),
                "expr": f"sum by (environment, project, le) (rate({LATENCY}_bucket{{{timed}}}[{window}]))",
            },
        ]
    return rules


def _bucket(window: str, environment: str, bound: float) -> str:
    return f'{BY} ({_record("latency_bucket", window)}{{environment="{environment}",le="{floatToGoString(bound)}"}})'


def bad_ratio(objective: str, window: str, environment: str, p99_ms: float | None = None) -> str:
    """PromQL of an objective's bad-event ratio over ``window`` for every deployment of ``environment``."""
    env = f'{{environment="{environment}"}}'
    if objective == "errors":
        return f"{_record('errors', window)}{env} / {_record('requests', window)}{env}"
    if objective == "fallbacks":
        return f"{_record('fallbacks', window)}{env} / {_record('requests', window)}{env}"
    assert p99_ms is not None
    threshold = p99_ms / 1000.0
    lower, upper = bracket(threshold)
    if upper is None:  # past the highest bound: what is above it is unknown, so counted as slower
        good = _bucket(window, environment, lower) if lower is not None else "0"
    elif lower is None:
        good = f"{_bucket(window, environment, upper)} * {threshold / upper:.12g}"
    elif threshold == upper:
        good = _bucket(window, environment, upper)
    else:
        share = (threshold - lower) / (upper - lower)
        low = _bucket(window, environment, lower)
        good = f"({low} + ({_bucket(window, environment, upper)} - {low}) * {share:.12g})"
    return f"1 - {good} / {_record('timed', window)}{env}"


def alerting_rules(environment: Environment) -> list[dict[str, Any]]:
    """The burn-rate alerts (and the low-throughput warning) of one environment's SLA."""
    name, sla = environment.name, environment.config.sla
    rules: list[dict[str, Any]] = []
    for objective, budget, text in ((o.name, budget_of(o), o.text) for o in objectives(sla)):
        for alert in BURN_ALERTS:
            limit = f"{alert.factor:g} * {budget:g}"
            long = bad_ratio(objective, alert.long_window, name, sla.p99_ms)
            short = bad_ratio(objective, alert.short_window, name, sla.p99_ms)
            rules.append(
                {
                    "alert": ALERT_NAMES[alert.name],
                    "expr": f"(\n  {long}\n) > ({limit})\nand\n(\n  {short}\n) > ({limit})",
                    "labels": {"severity": alert.severity, "slo": objective, "environment": name},
                    "annotations": {
                        "summary": (
                            f"{{{{ $labels.project }}}} in {{{{ $labels.environment }}}}: {objective} budget "
                            f"burning over {alert.factor:g}x over {alert.long_window} and {alert.short_window}"
                        ),
                        "description": (
                            f"SLA of {name}: {text}. The bad-event ratio over {alert.long_window} is "
                            f"{{{{ $value | humanizePercentage }}}} (budget {budget:g}); "
                            "see harbourmaster sla {{ $labels.project }} --env {{ $labels.environment }}"
                        ),
                    },
                }
            )
    if sla.min_rps is not None:
        rate = f'{_record("requests", "1h")}{{environment="{name}"}}'
        rules.append(
            {
                "alert": LOW_THROUGHPUT,
                "expr": f"{rate} < {sla.min_rps:g} and {rate} > 0",
                "labels": {"severity": "warning", "slo": "throughput", "environment": name},
                "annotations": {
                    "summary": "{{ $labels.project }} in {{ $labels.environment }}: "
                    f"below {sla.min_rps:g} requests/s over 1h",
                    "description": "{{ $value | humanize }} requests/s over the last hour",
                },
            }
        )
    return rules


def rule_groups(environments: Iterable[Environment]) -> dict[str, Any]:
    """The whole rule file: the recording rules, then one group of alerts per environment with an SLA."""
    groups: list[dict[str, Any]] = [{"name": "harbourmaster-sla-rates", "rules": recording_rules()}]
    for environment in environments:
        rules = alerting_rules(environment)
        if rules:
            groups.append({"name": f"harbourmaster-sla-{environment.name}", "rules": rules})
    return {"groups": groups}


class _RulesDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as block scalars, as people write rule files."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_RulesDumper.add_representer(str, _text)


def to_yaml(value: Any) -> str:
    """YAML of plain dicts, lists, strings and numbers (block scalars for multi-line strings), keys in order."""
    return yaml.dump(value, Dumper=_RulesDumper, sort_keys=False, allow_unicode=True, width=1_000_000)
