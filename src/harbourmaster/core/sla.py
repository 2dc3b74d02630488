"""Service levels of a deployment: traffic figures over windows, and error-budget burn rates
with the multi-window alerts of Google's SRE workbook (chapter "Alerting on SLOs"). Pure logic.

Replicas report cumulative counters per project (requests, errors, fallbacks, a latency
histogram) in their heartbeats; the control plane keeps them as timestamped samples. A
window's figures are counter *increases* over the window, summed over replicas
(``increase``: a counter that went down is a restarted one and counts from zero).

An objective with a budget (``SlaConfig.error_rate``, ``fallback_rate``, and ``p99_ms``:
1% of requests may be slower) burns at ``bad ratio / budget`` (the workbook's
``error ratio / (1 - SLO)``). Two alerts, each firing only when both of its windows burn:

- fast: 14.4x over 1 h and 5 min (2% of a 30-day budget in an hour): critical, page;
- slow: 6x over 6 h and 30 min (5% of it in six hours): warning, ticket.

Latency from a histogram: requests slower than ``p99_ms`` are counted by linear
interpolation inside the bucket holding the threshold (exact at a bucket bound), and
quantiles the way Prometheus' ``histogram_quantile`` computes them, so that the
figures here and the generated Prometheus rules (``core/sla_rules.py``) agree.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from pydantic import BaseModel

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.project_spec import PROJECT_NAME_PATTERN

# Upper bounds (seconds) of the replicas' latency histogram (serving/metrics.py uses these).
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)
# Request paths of the replicas' metrics: answered by a fallback, and not a prediction request.
FALLBACK_PATHS = ("failover", "rules")
NOT_PREDICTIONS = ("feedback",)
NO_LATENCY_PATHS = ("feedback", "refused")  # refusals are counted as requests but not timed for the SLA
# Windows, in seconds, and the two alerts of the workbook.
WINDOWS: dict[str, int] = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
LATENCY_OBJECTIVE_BUDGET = 0.01  # p99: 1% of requests may be slower than the threshold
MIN_BUDGET = 1e-6  # a zero budget: any bad event burns it (finite, so that every figure is plain JSON)
RESET_TOLERANCE_SECONDS = 5.0
MAX_UPTIME = (
    100 * 365 * 86400.0
)  # seconds: a heartbeat claiming more is not believed  # a series whose start moved later than this restarted


@dataclass(frozen=True)
class BurnAlert:
    """A multi-window burn-rate alert: fires when the budget burns ``factor`` times too fast over both windows."""

    name: str  # fast | slow
    factor: float
    long_window: str
    short_window: str
    severity: str  # critical (page) | warning (ticket)


FAST_BURN = BurnAlert("fast", 14.4, "1h", "5m", "critical")
SLOW_BURN = BurnAlert("slow", 6.0, "6h", "30m", "warning")
BURN_ALERTS = (FAST_BURN, SLOW_BURN)


@dataclass(frozen=True)
class Counts:
    """Cumulative counters of one project on one replica (or their increase over a window).

    ``buckets[i]`` counts timed requests at most ``LATENCY_BUCKETS[i]`` seconds (cumulative,
    like Prometheus' ``le``); ``timed`` counts them all (the ``+Inf`` bucket).
    """

    requests: float = 0.0
    errors: float = 0.0
    fallbacks: float = 0.0
    timed: float = 0.0
    latency_sum: float = 0.0
    buckets: tuple[float, ...] = field(default=(0.0,) * len(LATENCY_BUCKETS))

    def _values(self) -> tuple[float, ...]:
        return (self.requests, self.errors, self.fallbacks, self.timed, self.latency_sum, *self.buckets)

    @classmethod
    def _of(cls, values: Sequence[float]) -> Counts:
        return cls(*values[:5], buckets=tuple(values[5:]))  # type: ignore[arg-type]

    def __add__(self, other: Counts) -> Counts:
        return Counts._of([a + b for a, b in zip(self._values(), other._values(), strict=True)])

    def __sub__(self, other: Counts) -> Counts:
        return Counts._of([a - b for a, b in zip(self._values(), other._values(), strict=True)])

    def dropped_from(self, before: Counts) -> bool:
        """Whether a counter went down since ``before`` (the replica's counters restarted)."""
        return any(now < then for now, then in zip(self._values(), before._values(), strict=True))


ZERO = Counts()


@dataclass(frozen=True)
class Sample:
    """One replica's counters for one project at ``at`` (epoch seconds); ``started``: when they were zero."""

    at: float
    started: float
    counts: Counts


def increase(samples: Sequence[Sample], start: float, end: float) -> tuple[Counts, float]:
    """The counters' increase of one series (one replica, one project) over ``(start, end]``, and the
    seconds that increase spans (from the baseline to the newest sample: the divisor of a rate).

    The baseline is the newest sample at or before ``start``; a series that started inside
    the window counts from zero; one whose first sample in the window is all we know counts
    from that sample (what came before it is not in the window's figures). A counter that went
    down, or a later ``started``, is a restart: the new sample counts from zero.
    """
    ordered = sorted((s for s in samples if s.at <= end), key=lambda s: s.at)
    if not ordered:
        return ZERO, 0.0
    before = [s for s in ordered if s.at <= start]
    inside = [s for s in ordered if s.at > start]
    if before:
        base, base_at = before[-1], before[-1].at  # the increase spans from it: rates divide by that span
    elif ordered[0].started >= start:
        base, base_at = Sample(ordered[0].started, ordered[0].started, ZERO), ordered[0].started
    else:
        base, base_at = ordered[0], ordered[0].at
        inside = inside[1:]
    total, previous = ZERO, base
    for sample in inside:
        total = total + step_increase(previous, sample)
        previous = sample
    return total, (inside[-1].at - base_at if inside else 0.0)


def step_increase(previous: Sample | None, sample: Sample) -> Counts:
    """The increase from one sample of a series to the next: the difference, or the new sample's counts
    when the counters restarted (one went down, or ``started`` moved later) or nothing came before."""
    if previous is None:
        return sample.counts
    restarted = sample.counts.dropped_from(previous.counts) or (
        sample.started > previous.started + RESET_TOLERANCE_SECONDS
    )
    return sample.counts if restarted else sample.counts - previous.counts


@dataclass(frozen=True)
class Slice:
    """One series' samples inside one interval, summarised: the sum of their increments (each the
    ``step_increase`` over the series' previous sample, kept when the sample was), how many samples,
    and the first and last one's time (epoch seconds)."""

    increase: Counts
    samples: int
    first_at: float
    last_at: float


@dataclass(frozen=True)
class FirstSample:
    """A series' oldest sample read, and the increment kept with it."""

    sample: Sample
    increment: Counts


def slices_increase(
    inside: Sequence[Slice], base_at: float | None, first: FirstSample | None, start: float
) -> tuple[Counts, float]:
    """What ``increase`` gives over ``(start, end]`` for one series, from its slices in the window.

    ``base_at``: the time of the series' newest sample at or before ``start`` (None: none was read;
    then ``first``, the series' oldest sample read, decides as ``increase`` does: a series that started
    inside the window counts from zero, otherwise from its first sample).
    """
    inside = [s for s in inside if s.samples]
    if not inside:
        return ZERO, 0.0
    total = ZERO
    for part in inside:
        total = total + part.increase
    last = max(s.last_at for s in inside)
    if base_at is not None:
        return total, last - base_at
    if first is None:
        raise ValueError("a series without a sample before the window needs its first sample")
    if first.sample.started >= start:
        return total - first.increment + first.sample.counts, last - first.sample.started
    if sum(s.samples for s in inside) == 1:
        return ZERO, 0.0
    return total - first.increment, last - first.sample.at


def window_counts(series: Iterable[Sequence[Sample]], start: float, end: float) -> tuple[Counts, float]:
    """The increase over ``(start, end]`` summed over series (replicas), and the longest span it covers."""
    total, covered = ZERO, 0.0
    for samples in series:
        counts, seconds = increase(_cut(samples, start, end), start, end)
        total, covered = total + counts, max(covered, seconds)
    return total, covered


def _cut(samples: Sequence[Sample], start: float, end: float) -> Sequence[Sample]:
    """The samples ``increase`` reads for ``(start, end]``: the newest at or before ``start`` and those after
    it up to ``end`` (the same increase, without walking hours of samples for a five-minute window)."""
    ordered = sorted(samples, key=attrgetter("at"))  # already in order, as the store reads them: linear
    times = [s.at for s in ordered]
    return ordered[max(0, bisect_right(times, start) - 1) : bisect_right(times, end)]


def quantile(q: float, counts: Counts, bounds: Sequence[float] = LATENCY_BUCKETS) -> float | None:
    """The ``q``-quantile (seconds) of the histogram, as Prometheus' ``histogram_quantile`` computes it
    (linear inside the bucket; the highest finite bound when it falls in the +Inf bucket). None: no data."""
    if counts.timed <= 0:
        return None
    rank = q * counts.timed
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts.buckets, strict=True):
        if count >= rank:
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


def at_most(threshold: float, counts: Counts, bounds: Sequence[float] = LATENCY_BUCKETS) -> float:
    """Timed requests at most ``threshold`` seconds: exact at a bucket bound, linear inside a bucket;
    past the highest bound only that bound's count (the rest is unknown, so counted as slower)."""
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts.buckets, strict=True):
        if threshold <= bound:
            return lower_count + (count - lower_count) * (threshold - lower_bound) / (bound - lower_bound)
        lower_bound, lower_count = bound, count
    return lower_count


def bracket(threshold: float, bounds: Sequence[float] = LATENCY_BUCKETS) -> tuple[float | None, float | None]:
    """The bucket bounds around ``threshold`` (seconds): (lower or None for 0, upper or None past the last)."""
    lower: float | None = None
    for bound in bounds:
        if threshold <= bound:
            return lower, bound
        lower = bound
    return lower, None


@dataclass(frozen=True)
class Objective:
    """An objective with an error budget: the share of requests allowed to be bad."""

    name: str  # errors | latency | fallbacks
    budget: float
    text: str


def objectives(sla: SlaConfig) -> list[Objective]:
    """The SLA's objectives that have a budget (and so a burn rate)."""
    found = []
    if sla.error_rate is not None:
        found.append(Objective("errors", sla.error_rate, f"error rate at most {sla.error_rate:g}"))
    if sla.p99_ms is not None:
        found.append(Objective("latency", LATENCY_OBJECTIVE_BUDGET, f"99% of requests within {sla.p99_ms:g} ms"))
    if sla.fallback_rate is not None:
        found.append(Objective("fallbacks", sla.fallback_rate, f"fallback rate at most {sla.fallback_rate:g}"))
    return found


def bad_events(objective: Objective, counts: Counts, sla: SlaConfig) -> tuple[float, float]:
    """(bad, total) events of an objective in ``counts``."""
    if objective.name == "errors":
        return counts.errors, counts.requests
    if objective.name == "fallbacks":
        return counts.fallbacks, counts.requests
    assert sla.p99_ms is not None
    return max(0.0, counts.timed - at_most(sla.p99_ms / 1000.0, counts)), counts.timed


def budget_of(objective: Objective) -> float:
    """The budget burn rates divide by: a zero budget (no bad event allowed) counts as one in a million."""
    return max(objective.budget, MIN_BUDGET)


def burn_rate(bad: float, total: float, budget: float) -> float | None:
    """How many times faster than allowed the budget burns (None: no event in the window)."""
    if total <= 0:
        return None
    return (bad / total) / max(budget, MIN_BUDGET)


class WindowFigures(BaseModel):
    """A deployment's traffic over one window."""

    window: str
    seconds: int
    covered_seconds: float  # the span the counted increase covers (the samples' times; about the window)
    requests: float
    throughput: float | None  # requests per second over the covered span
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    fallback_rate: float | None
    slow_rate: float | None  # share of timed requests slower than the SLA's p99_ms
    burn: dict[str, float | None]  # per objective


class BurnVerdict(BaseModel):
    """One burn-rate alert's state: which objectives burn over both its windows."""

    alert: str  # fast | slow
    severity: str
    factor: float
    long_window: str
    short_window: str
    firing: bool
    objectives: list[str]  # those burning over both windows
    burn: dict[str, list[float | None]]  # per objective: [long, short]
    summary: str


class SlaReport(BaseModel):
    """A deployment's figures over every window, against its environment's SLA, and the burn alerts."""

    project: str
    environment: str
    sla: SlaConfig
    objectives: list[str]
    windows: list[WindowFigures]
    alerts: list[BurnVerdict]
    replicas: int  # replicas with samples in the longest window
    computed_at: datetime

    def window(self, name: str) -> WindowFigures:
        return next(w for w in self.windows if w.window == name)


def figures(name: str, seconds: int, counts: Counts, covered: float, sla: SlaConfig) -> WindowFigures:
    def ms(q: float) -> float | None:
        value = quantile(q, counts)
        return None if value is None else value * 1000.0

    def share(part: float, whole: float) -> float | None:
        return part / whole if whole > 0 else None

    slow = None
    if sla.p99_ms is not None and counts.timed > 0:
        slow = max(0.0, counts.timed - at_most(sla.p99_ms / 1000.0, counts)) / counts.timed
    burn = {}
    for objective in objectives(sla):
        bad, total = bad_events(objective, counts, sla)
        burn[objective.name] = burn_rate(bad, total, objective.budget)
    return WindowFigures(
        window=name,
        seconds=seconds,
        covered_seconds=round(covered, 3),
        requests=counts.requests,
        throughput=counts.requests / covered if covered > 0 else None,
        p50_ms=ms(0.5),
        p95_ms=ms(0.95),
        p99_ms=ms(0.99),
        error_rate=share(counts.errors, counts.requests),
        fallback_rate=share(counts.fallbacks, counts.requests),
        slow_rate=slow,
        burn=burn,
    )


def judge(alert: BurnAlert, windows: dict[str, WindowFigures], sla: SlaConfig) -> BurnVerdict:
    """Whether ``alert`` fires: some objective burns above its factor over both windows."""
    long, short = windows[alert.long_window], windows[alert.short_window]
    burning: list[str] = []
    burns: dict[str, list[float | None]] = {}
    for objective in objectives(sla):
        pair = [long.burn.get(objective.name), short.burn.get(objective.name)]
        burns[objective.name] = pair
        if all(value is not None and value > alert.factor for value in pair):
            burning.append(objective.name)
    where = f"{alert.long_window} and {alert.short_window}"
    if burning:
        parts = [
            f"{name} budget burning {_times(burns[name][0])} ({alert.long_window}) and "
            f"{_times(burns[name][1])} ({alert.short_window})"
            for name in burning
        ]
        summary = f"{'; '.join(parts)}: above {alert.factor:g}x over both {where}"
    elif not burns:
        summary = "no objective with a budget in the SLA"
    else:
        summary = f"no budget burns above {alert.factor:g}x over both {where}"
    return BurnVerdict(
        alert=alert.name,
        severity=alert.severity,
        factor=alert.factor,
        long_window=alert.long_window,
        short_window=alert.short_window,
        firing=bool(burning),
        objectives=burning,
        burn=burns,
        summary=summary,
    )


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def assess(
    project: str,
    environment: str,
    sla: SlaConfig,
    series: Sequence[Sequence[Sample]],
    now: datetime,
) -> SlaReport:
    """Figures over every window and both burn alerts, from the replicas' sample series at ``now``."""
    end = now.timestamp()
    longest = end - max(WINDOWS.values())
    return report_of(
        project,
        environment,
        sla,
        lambda seconds: window_counts(series, end - seconds, end),
        sum(1 for samples in series if any(s.at > longest for s in samples)),
        now,
    )


def report_of(
    project: str,
    environment: str,
    sla: SlaConfig,
    counts_over: Callable[[int], tuple[Counts, float]],
    replicas: int,
    now: datetime,
) -> SlaReport:
    """The report from each window's (increase, covered seconds), as ``counts_over(window seconds)`` gives."""
    windows = {}
    for name, seconds in WINDOWS.items():
        counts, covered = counts_over(seconds)
        windows[name] = figures(name, seconds, counts, covered, sla)
    return SlaReport(
        project=project,
        environment=environment,
        sla=sla,
        objectives=[o.name for o in objectives(sla)],
        windows=list(windows.values()),
        alerts=[judge(alert, windows, sla) for alert in BURN_ALERTS],
        replicas=replicas,
        computed_at=now,
    )


def heartbeat_traffic(raw: object, limit: int = 1000) -> tuple[float, dict[str, Counts]] | None:
    """A heartbeat's ``traffic`` block as (uptime seconds, counts per project); None when it is absent,
    malformed or from a replica whose histogram has other bounds (nothing to compare it with). Entries
    that are not a project name with non-negative finite counters are left out."""
    if not isinstance(raw, dict) or not isinstance(raw.get("projects"), dict):
        return None
    uptime = raw.get("uptime")
    if not _number(uptime) or not 0 <= uptime <= MAX_UPTIME or list(raw.get("bounds") or []) != list(LATENCY_BUCKETS):
        return None
    projects: dict[str, Counts] = {}
    for project, values in list(raw["projects"].items())[:limit]:
        if not isinstance(project, str) or not PROJECT_NAME_PATTERN.fullmatch(project):
            continue
        counts = _counts_of(values)
        if counts is not None:
            projects[project] = counts
    return float(uptime), projects


CANARY_SIDES = ("champion", "challenger")


def heartbeat_sides(raw: object, limit: int = 1000) -> dict[tuple[str, str], Counts]:
    """A heartbeat's per-side counters of canary deployments: (project, side) -> counts. What is not
    well formed is left out (an older replica sends none: the rollout controller then sees no traffic)."""
    if heartbeat_traffic(raw, limit) is None:
        return {}
    sides = raw.get("sides") if isinstance(raw, dict) else None
    found: dict[tuple[str, str], Counts] = {}
    if not isinstance(sides, dict):
        return found
    for project, by_side in list(sides.items())[:limit]:
        if not isinstance(project, str) or not PROJECT_NAME_PATTERN.fullmatch(project) or not isinstance(by_side, dict):
            continue
        for side in CANARY_SIDES:
            counts = _counts_of(by_side.get(side))
            if counts is not None:
                found[(project, side)] = counts
    return found


def _counts_of(values: object) -> Counts | None:
    if not isinstance(values, dict):
        return None
    numbers = [values.get(key) for key in ("requests", "errors", "fallbacks", "timed", "latency_sum")]
    buckets = values.get("buckets")
    if not isinstance(buckets, list) or len(buckets) != len(LATENCY_BUCKETS):
        return None
    if all(_number(v) and v >= 0 for v in [*numbers, *buckets]):
        return Counts(*(float(v) for v in numbers), buckets=tuple(float(b) for b in buckets))  # type: ignore[arg-type]
    return None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
