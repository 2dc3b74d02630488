"""Load tests of a version, the pure part: the rate to offer, the requests to send when production has
captured none, the figures of a finished run and its verdict against an environment's SLA.

- Rate: the one asked for; otherwise the production deployment's observed peak (the highest request rate
  summed over its replicas between two traffic samples, ``peak_rate``) times a headroom factor, never
  below a floor (which is also the rate when production has no traffic yet).
- Figures: latencies are measured from each request's *intended* send time (see ``loadgen``), so
  percentiles include the time a request waited behind a stalled server. Requests with no answer count as
  errors, with no latency; ``max_ms`` is the slowest answer.
- Verdict: passed when p99 is within the SLA's ``p99_ms`` and the error rate within its ``error_rate``
  (and the fallback rate within ``fallback_rate``) at the rate. A generator that could not send on time
  (``late_sends``) charged its own lateness to the server, since latency runs from the intended time: a
  pass stands (the server did better than measured), a failure is flagged as possibly the generator's.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from harbourmaster.core.schema import InputSchema
from harbourmaster.core.sla import RESET_TOLERANCE_SECONDS, Sample

DEFAULT_HEADROOM = 2.0
DEFAULT_FLOOR = 10.0  # req/s: the rate when production has no traffic to learn from
DEFAULT_DURATION = 10.0  # seconds
MAX_RATE = 50_000.0
MAX_DURATION = 600.0
MAX_REQUESTS = 1_000_000  # rate x duration
LATE_MS = 10.0  # a send this much after its time is late
MAX_LATE_SHARE = 0.01  # more late sends than this: the generator was saturated (said in the verdict)
SLOWEST_KEPT = 20  # of the slowest requests, kept in the result (when they were due, how long they took)


def check_options(rate: float | None, duration: float, headroom: float, floor: float) -> list[str]:
    """What is wrong with a load test's options (empty: nothing)."""
    problems = []
    if rate is not None and not (0 < rate <= MAX_RATE):
        problems.append(f"--rate {rate:g}: give a rate above 0 and at most {MAX_RATE:g} requests per second")
    if not (0 < duration <= MAX_DURATION):
        problems.append(f"--duration {duration:g}: give a duration above 0 and at most {MAX_DURATION:g} seconds")
    if not (headroom > 0 and math.isfinite(headroom)):
        problems.append(f"--headroom {headroom:g}: give a factor above 0 (e.g. 2 for twice the peak)")
    if not (0 < floor <= MAX_RATE):
        problems.append(f"--floor {floor:g}: give a rate above 0 and at most {MAX_RATE:g}")
    if rate is not None and not problems and rate * duration > MAX_REQUESTS:
        problems.append(
            f"{rate:g} req/s for {duration:g} s is {rate * duration:.0f} requests, more than {MAX_REQUESTS}: "
            "shorten --duration"
        )
    return problems


def peak_rate(series: Iterable[Sequence[Sample]]) -> float | None:
    """The highest request rate (per second) summed over replicas, from each replica's cumulative counters
    (``series``: one list of samples per replica); None when there is no interval to measure a rate on.

    Between two consecutive samples of a replica its rate is the requests' increase over the time between
    them (a restart counts from zero since the restart). The peak is the highest sum of the rates of the
    intervals that overlap at some instant."""
    spans: list[tuple[float, float, float]] = []  # (start, end, rate)
    for samples in series:
        ordered = sorted(samples, key=lambda s: s.at)
        for before, after in itertools.pairwise(ordered):
            restarted = after.counts.dropped_from(before.counts) or (
                after.started > before.started + RESET_TOLERANCE_SECONDS
            )
            start = max(after.started, before.at) if restarted else before.at
            requests = after.counts.requests if restarted else after.counts.requests - before.counts.requests
            if after.at - start > 0:
                spans.append((start, after.at, max(0.0, requests) / (after.at - start)))
    if not spans:
        return None
    events = sorted([(start, 1, rate) for start, _, rate in spans] + [(end, 0, rate) for _, end, rate in spans])
    peak = current = 0.0
    for _, opens, rate in events:  # at equal times an interval ends (0) before the next one starts (1)
        current = current + rate if opens else current - rate
        peak = max(peak, current)
    return peak


def choose_rate(
    requested: float | None, peak: float | None, headroom: float, floor: float, source: str
) -> tuple[float, str]:
    """The rate to offer and the rule that chose it (``source``: where the peak was observed)."""
    if requested is not None:
        return requested, f"--rate {requested:g} req/s, as asked"
    if peak is None or peak <= 0:
        return floor, f"the floor, {floor:g} req/s: {source} has no traffic to learn a peak from"
    wanted = peak * headroom
    if wanted < floor:
        return floor, f"the floor, {floor:g} req/s, above {headroom:g} x the peak {peak:.2f} req/s of {source}"
    return round(wanted, 2), f"{headroom:g} x the peak {peak:.2f} req/s of {source}"


def sample_records(profile: ReferenceProfile, schema: InputSchema, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` made-up records drawn from a version's reference profile: each numeric feature from its
    histogram (a bin by its share, then uniformly inside it), each categorical one by its frequencies;
    typed by the input schema. A feature the profile withholds (sensitive) or does not know gets the
    schema's first category, the middle of its range, or null when nullable."""
    chooser = random.Random(seed)
    records = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for column in schema.columns:
            feature = profile.features.get(column.name)
            value: Any = None
            if feature is not None and not feature.sensitive and feature.count > 0:
                if isinstance(feature, NumericProfile):
                    value = _numeric(feature, chooser)
                elif isinstance(feature, CategoricalProfile) and feature.frequencies:
                    keys = list(feature.frequencies)
                    value = chooser.choices(keys, weights=[feature.frequencies[k] for k in keys])[0]
            if value is None:
                value = _fallback_value(column)
            record[column.name] = typed_value(value, column.dtype, column.categories)
        records.append(record)
    return records


def _numeric(feature: NumericProfile, chooser: random.Random) -> float | None:
    edges, shares = feature.bin_edges, feature.bin_fractions
    if len(edges) >= 2 and len(shares) == len(edges) - 1 and sum(shares) > 0:
        bin_index = chooser.choices(range(len(shares)), weights=shares)[0]
        return chooser.uniform(edges[bin_index], edges[bin_index + 1])
    return feature.quantiles.get("p50", feature.mean)


def _fallback_value(column: Any) -> Any:
    if column.categories:
        return column.categories[0]
    if column.minimum is not None and column.maximum is not None:
        return (column.minimum + column.maximum) / 2
    return None if column.nullable else 0


def typed_value(value: Any, dtype: str, categories: list[Any] | None) -> Any:
    """``value`` (a profile's, or a logged one: numbers as floats, datetimes as epoch seconds, categories as
    text) as a request sends it for a column of ``dtype``."""
    if value is None:
        return None
    if categories:
        for category in categories:  # the profile keys categories as text: give back the declared value
            if str(category) == str(value):
                return category
    if dtype == "integer":
        return round(float(value))
    if dtype == "float":
        return float(value)
    if dtype == "boolean":
        return value if isinstance(value, bool) else str(value) == "True" or value == 1
    if dtype == "datetime":
        from datetime import UTC, datetime

        return datetime.fromtimestamp(float(value), UTC).isoformat() if not isinstance(value, str) else value
    return value if isinstance(value, str) else str(value)


class LoadTestFigures(BaseModel):
    """What a load test measured."""

    rate: float  # offered, req/s
    duration: float  # seconds of schedule
    requests: int  # scheduled
    answered: int  # with an HTTP answer (any status)
    ok: int  # 2xx answers
    errors: int  # non-2xx answers, failed connections, no answer in time
    timed_out: int
    throughput: float  # 2xx answers per second, from the first intended send to the last answer
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_rate: float
    fallback_rate: float | None  # answers by a fallback (failover, rules) among 2xx, when tagged
    late_sends: int  # sends the generator made more than late_ms after their time (its own saturation)
    waited: int  # requests queued more than late_ms for a free connection (all busy: a slow server)
    max_send_lag_ms: float
    connections: int
    statuses: dict[str, int]  # status code (or "timeout"/"connection") -> count
    answered_by: dict[str, int]  # tag (path v<version>) -> count
    slowest: list[list[float]]  # [intended send (s after start), latency ms] of the slowest answers


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def figures(
    rate: float,
    duration: float,
    outcomes: Sequence[tuple[float, float | None, int, str | None]],
    elapsed: float,
    late_sends: int,
    waited: int,
    max_send_lag_ms: float,
    connections: int,
    fallback_paths: Sequence[str] = ("failover", "rules"),
) -> LoadTestFigures:
    """The figures of a run from its outcomes: (intended send, latency in seconds or None, status, tag)."""
    latencies = sorted(latency * 1000.0 for _, latency, status, _ in outcomes if latency is not None and status > 0)
    statuses: dict[str, int] = {}
    answered_by: dict[str, int] = {}
    ok = timed_out = fallbacks = 0
    for _, _latency, status, tag in outcomes:
        key = "timeout" if status == -1 else "connection" if status < 0 else str(status)
        statuses[key] = statuses.get(key, 0) + 1
        if 200 <= status < 300:
            ok += 1
            if tag:
                answered_by[tag] = answered_by.get(tag, 0) + 1
                fallbacks += tag.split(" ")[0] in fallback_paths
        timed_out += status == -1
    total = len(outcomes)
    slowest = sorted(
        ((intended, latency * 1000.0) for intended, latency, status, _ in outcomes if latency is not None),
        key=lambda pair: -pair[1],
    )[:SLOWEST_KEPT]
    return LoadTestFigures(
        rate=rate,
        duration=duration,
        requests=total,
        answered=len(latencies),
        ok=ok,
        errors=total - ok,
        timed_out=timed_out,
        throughput=ok / elapsed if elapsed > 0 else 0.0,
        p50_ms=_quantile(latencies, 0.50),
        p95_ms=_quantile(latencies, 0.95),
        p99_ms=_quantile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else None,
        error_rate=(total - ok) / total if total else 0.0,
        fallback_rate=fallbacks / ok if ok and answered_by else None,
        late_sends=late_sends,
        waited=waited,
        max_send_lag_ms=max_send_lag_ms,
        connections=connections,
        statuses=statuses,
        answered_by=answered_by,
        slowest=[[round(a, 4), round(b, 3)] for a, b in slowest],
    )


def judge(result: LoadTestFigures, sla: SlaConfig, environment: str) -> tuple[bool, list[str]]:
    """(passed, reasons): each objective of the SLA checked at the rate, and the generator's own schedule."""
    reasons: list[str] = []
    passed = True
    p99 = result.p99_ms if result.p99_ms is not None else math.inf
    if sla.p99_ms is not None:
        if p99 > sla.p99_ms:
            passed = False
            reasons.append(f"p99 {_ms(result.p99_ms)} is above the SLA of {environment} ({sla.p99_ms:g} ms)")
        else:
            reasons.append(f"p99 {_ms(result.p99_ms)} within {sla.p99_ms:g} ms")
    if sla.error_rate is not None:
        if result.error_rate > sla.error_rate:
            passed = False
            reasons.append(
                f"error rate {result.error_rate:.2%} is above the SLA of {environment} ({sla.error_rate:.2%})"
            )
        else:
            reasons.append(f"error rate {result.error_rate:.2%} within {sla.error_rate:.2%}")
    if sla.fallback_rate is not None and result.fallback_rate is not None:
        if result.fallback_rate > sla.fallback_rate:
            passed = False
            reasons.append(
                f"fallback rate {result.fallback_rate:.2%} is above the SLA of {environment} ({sla.fallback_rate:.2%})"
            )
        else:
            reasons.append(f"fallback rate {result.fallback_rate:.2%} within {sla.fallback_rate:.2%}")
    if result.ok == 0:
        passed = False
        reasons.append("no request was answered successfully")
    if sla.p99_ms is None and sla.error_rate is None:
        reasons.append(f"the SLA of {environment} sets neither p99_ms nor error_rate: nothing else to hold it to")
    if saturated(result):
        # Late sends are charged to the server (latency runs from the intended time): a pass stands, a
        # failure may be the generator's own.
        reasons.append(
            f"the load generator sent {result.late_sends} of {result.requests} requests more than {LATE_MS:g} ms "
            f"late (worst {result.max_send_lag_ms:.0f} ms), charged to the server"
            + (
                ""
                if passed
                else ": the failure may be this machine's, not the server's; run it again on a less busy "
                "machine or at a lower --rate"
            )
        )
    return passed, reasons


def saturated(result: LoadTestFigures) -> bool:
    """Whether the generator missed its schedule on more than ``MAX_LATE_SHARE`` of the requests."""
    return bool(result.requests) and result.late_sends > MAX_LATE_SHARE * result.requests


def _ms(value: float | None) -> str:
    return "- (no answer)" if value is None else f"{value:.1f} ms"
