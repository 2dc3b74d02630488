"""The SLA math: counter increases over windows (restarts, late starts), histogram quantiles and the
slow-request count, burn rates, and the SRE workbook's two multi-window alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.sla import (
    FAST_BURN,
    LATENCY_BUCKETS,
    SLOW_BURN,
    Counts,
    Sample,
    assess,
    at_most,
    burn_rate,
    heartbeat_traffic,
    increase,
    quantile,
    window_counts,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
END = NOW.timestamp()
BOUNDS = len(LATENCY_BUCKETS)


def counts(requests: float, errors: float = 0.0, fallbacks: float = 0.0, fast: float | None = None) -> Counts:
    """``requests`` timed ones, ``fast`` of them within 5 ms and the rest within 100 ms."""
    fast = requests if fast is None else fast
    buckets = tuple(0.0 if b < 0.005 else (fast if b < 0.1 else requests) for b in LATENCY_BUCKETS)
    return Counts(requests, errors, fallbacks, requests, 0.0, buckets)


def minutes(n: float) -> float:
    return END - 60 * n


def test_increase_from_the_baseline_before_the_window() -> None:
    series = [Sample(minutes(m), minutes(600), counts(1000 - 10 * m)) for m in (70, 60, 30, 0)]
    total, covered = increase(series, minutes(60), END)
    assert total.requests == 600 and covered == 3600
    total, covered = increase(series, minutes(45), END)  # baseline: the sample 60 min ago, and the span from it
    assert total.requests == 600 and covered == 3600


def test_a_series_started_inside_the_window_counts_from_zero() -> None:
    series = [Sample(minutes(m), minutes(10), counts(100 - m)) for m in (9, 5, 0)]
    total, covered = increase(series, minutes(60), END)
    assert total.requests == 100 and covered == 600


def test_a_series_known_only_from_inside_the_window_counts_from_its_first_sample() -> None:
    # The counters started long ago; the first sample we hold is 20 min old: what came before is not ours.
    series = [Sample(minutes(m), minutes(600), counts(5000 - m)) for m in (20, 0)]
    total, covered = increase(series, minutes(60), END)
    assert total.requests == 20 and covered == 1200


def test_a_restarted_replica_counts_from_zero_again() -> None:
    series = [
        Sample(minutes(40), minutes(100), counts(400)),
        Sample(minutes(20), minutes(100), counts(600)),
        Sample(minutes(10), minutes(12), counts(50)),  # counters went down: a restart
        Sample(minutes(5), minutes(12), counts(90)),
        Sample(minutes(1), minutes(3), counts(95)),  # started later, counters higher: a restart too
    ]
    total, _ = increase(series, minutes(60), END)
    assert total.requests == (600 - 400) + 50 + (90 - 50) + 95  # no baseline before: from the first sample


def test_a_silent_replica_adds_nothing_and_replicas_add_up() -> None:
    silent = [Sample(minutes(90), minutes(100), counts(10))]
    assert increase(silent, minutes(60), END) == (Counts(), 0.0)
    busy = [Sample(minutes(m), minutes(100), counts(1000 - m, errors=100 - m)) for m in (5, 0)]
    total, covered = window_counts([silent, busy, busy], minutes(5), END)
    assert (total.requests, total.errors, covered) == (10, 10, 300)


def test_quantiles_follow_histogram_quantile() -> None:
    # 100 requests between 2 and 5 ms: linear inside that bucket, as Prometheus' histogram_quantile.
    buckets = tuple(0.0 if bound < 0.005 else 100.0 for bound in LATENCY_BUCKETS)
    histogram = Counts(100, timed=100, buckets=buckets)
    assert quantile(0.5, histogram) == pytest.approx(0.0035)
    assert quantile(0.99, histogram) == pytest.approx(0.002 + 0.003 * 0.99)
    assert quantile(0.5, Counts()) is None
    slow = Counts(10, timed=10, buckets=(0.0,) * BOUNDS)  # all slower than the highest bound
    assert quantile(0.5, slow) == LATENCY_BUCKETS[-1]


def test_requests_within_a_threshold_are_exact_at_a_bound_and_interpolated_inside_a_bucket() -> None:
    buckets = tuple(0.0 if bound < 0.05 else 60.0 if bound < 0.1 else 100.0 for bound in LATENCY_BUCKETS)
    histogram = Counts(100, timed=100, buckets=buckets)
    assert at_most(0.05, histogram) == 60.0
    assert at_most(0.1, histogram) == 100.0
    assert at_most(0.025, histogram) == pytest.approx(60.0 * 5 / 30)  # inside (20 ms, 50 ms]
    assert at_most(0.075, histogram) == pytest.approx(80.0)
    assert at_most(10.0, histogram) == 100.0  # past the highest bound: its count


def test_burn_rate_is_the_bad_ratio_over_the_budget() -> None:
    assert burn_rate(10, 1000, 0.001) == pytest.approx(10.0)
    assert burn_rate(0, 1000, 0.001) == 0.0
    assert burn_rate(0, 0, 0.001) is None  # no event: no burn rate
    assert burn_rate(1, 1000, 0.0) == pytest.approx(1000.0)  # a zero budget counts as one in a million


def _steady(rate: float, error_share: float, recent_error_share: float, recent_minutes: int) -> list[Sample]:
    """One replica for 7 h at ``rate`` requests/min, errors at one share, then another in the last minutes."""
    samples, requests, errors = [], 0.0, 0.0
    for minute in range(420, -1, -1):  # the minute ending ``minute`` minutes ago
        if minute < 420:
            requests += rate
            errors += rate * (recent_error_share if minute < recent_minutes else error_share)
        samples.append(Sample(minutes(minute), minutes(421), counts(requests, errors)))
    return samples


def test_the_fast_alert_needs_both_of_its_windows() -> None:
    sla = SlaConfig(error_rate=0.001)
    burst = assess("churn", "prod", sla, [_steady(600, 0.0, 0.03, 60)], NOW)  # 3% errors for the last hour
    fast, slow = burst.alerts
    assert (fast.alert, fast.firing, fast.objectives, fast.severity) == ("fast", True, ["errors"], "critical")
    assert burst.window("1h").error_rate == pytest.approx(0.03)
    assert fast.burn["errors"] == [pytest.approx(30.0), pytest.approx(30.0)]
    assert not slow.firing  # 6 h: 0.5% errors, 5x: below 6x
    assert burst.window("6h").burn["errors"] == pytest.approx(5.0, rel=0.01)

    over = assess("churn", "prod", sla, [_steady(600, 0.0, 0.0, 0)], NOW)
    assert not any(alert.firing for alert in over.alerts)
    # A spike only in the last 5 minutes: the 1 h window has not burnt 14.4x.
    spike = assess("churn", "prod", sla, [_steady(600, 0.0, 0.1, 5)], NOW)
    assert spike.window("5m").burn["errors"] > FAST_BURN.factor
    assert not spike.alerts[0].firing


def test_the_slow_alert_fires_on_a_steady_burn_between_6x_and_14_4x() -> None:
    report = assess("churn", "prod", SlaConfig(error_rate=0.001), [_steady(600, 0.008, 0.008, 0)], NOW)
    fast, slow = report.alerts
    assert not fast.firing
    assert (slow.alert, slow.firing, slow.severity) == ("slow", True, "warning")
    assert SLOW_BURN.factor < report.window("6h").burn["errors"] < FAST_BURN.factor


def test_latency_and_fallback_objectives_burn_like_errors() -> None:
    samples, total = [], 0.0
    for minute in range(60, -1, -1):  # a replica started an hour ago: 20% slower than 50 ms, 5% fallbacks
        samples.append(Sample(minutes(minute), minutes(61), counts(total, fallbacks=total * 0.05, fast=total * 0.8)))
        total += 100
    sla = SlaConfig(p99_ms=50, fallback_rate=0.001, p50_ms=10)
    report = assess("churn", "prod", sla, [samples], NOW)
    hour = report.window("1h")
    assert report.objectives == ["latency", "fallbacks"]
    assert hour.slow_rate == pytest.approx(0.2) and hour.burn["latency"] == pytest.approx(20.0)
    assert hour.fallback_rate == pytest.approx(0.05) and hour.burn["fallbacks"] == pytest.approx(50.0)
    assert hour.throughput == pytest.approx(100 / 60)
    assert hour.p50_ms == pytest.approx(0.002 * 1000 + 3 * 0.5 / 0.8)  # inside (2, 5] ms
    assert report.alerts[0].firing and report.alerts[0].objectives == ["latency", "fallbacks"]
    assert report.window("6h").requests == hour.requests  # it started inside every window
    assert report.replicas == 1


def test_no_traffic_and_no_objective_give_defined_answers() -> None:
    quiet = assess("churn", "dev", SlaConfig(error_rate=0.01), [], NOW)
    assert all(w.requests == 0 and w.throughput is None and w.p99_ms is None for w in quiet.windows)
    assert not any(alert.firing for alert in quiet.alerts)
    assert quiet.window("1h").burn == {"errors": None}
    none = assess("churn", "dev", SlaConfig(), [_steady(10, 0.5, 0.5, 0)], NOW)
    assert none.objectives == [] and none.alerts[0].summary == "no objective with a budget in the SLA"


def test_the_heartbeat_block_is_checked_before_it_is_believed() -> None:
    good = {
        "uptime": 12.5,
        "bounds": list(LATENCY_BUCKETS),
        "projects": {
            "churn": {
                "requests": 3,
                "errors": 1,
                "fallbacks": 0,
                "timed": 2,
                "latency_sum": 0.1,
                "buckets": [2] * BOUNDS,
            }
        },
    }
    uptime, parsed = heartbeat_traffic(good)
    assert uptime == 12.5 and parsed["churn"].requests == 3 and parsed["churn"].buckets == (2.0,) * BOUNDS
    assert heartbeat_traffic(None) is None
    assert heartbeat_traffic({**good, "bounds": [1, 2]}) is None  # another histogram: not comparable
    assert heartbeat_traffic({**good, "uptime": -1}) is None
    assert heartbeat_traffic({**good, "uptime": 1e300}) is None  # would overflow a datetime
    assert heartbeat_traffic({**good, "uptime": True}) is None
    bad_projects = {
        "": good["projects"]["churn"],
        "x" * 65: good["projects"]["churn"],
        "nul\u0000": good["projects"]["churn"],  # PostgreSQL would refuse it
        "Upper Case": good["projects"]["churn"],
        "neg": {**good["projects"]["churn"], "errors": -1},
        "nan": {**good["projects"]["churn"], "requests": float("nan")},
        "short": {**good["projects"]["churn"], "buckets": [1]},
        "text": {**good["projects"]["churn"], "timed": "2"},
    }
    assert heartbeat_traffic({**good, "projects": bad_projects}) == (12.5, {})
