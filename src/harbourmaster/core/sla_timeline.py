"""A deployment's traffic over time: the SLA figures of consecutive intervals (for charts). Pure logic.

Each interval's figures are the counters' increase over it, summed over replicas, with counter
resets handled exactly as the SLA windows handle them (``core/sla.py``: ``window_counts`` and
``figures`` are reused, so a point of the chart and a window of the SLA report agree).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter

from pydantic import BaseModel

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.sla import ZERO, Counts, FirstSample, Sample, Slice, figures, slices_increase, window_counts

MAX_POINTS = 360  # a chart never needs more; the step grows instead


class TrafficPoint(BaseModel):
    """The figures of one interval ``(end - step, end]``; None where the interval had no request."""

    end: datetime
    requests: float
    throughput: float | None  # requests per second over the interval
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    fallback_rate: float | None


def step_for(span_seconds: float, wanted: float) -> float:
    """The interval length: ``wanted``, or longer so that the span holds at most ``MAX_POINTS``."""
    return max(wanted, math.ceil(span_seconds / MAX_POINTS))


def timeline(
    series: Sequence[Sequence[Sample]], sla: SlaConfig, end: datetime, span_seconds: float, step_seconds: float
) -> list[TrafficPoint]:
    """Consecutive intervals of ``step_seconds`` covering ``span_seconds`` up to ``end``, oldest first.

    An interval's throughput divides by the interval itself (not by the samples' span, as a window
    does), so that a quiet interval reads as a lower rate rather than as no figure at all.
    """
    step = step_for(span_seconds, step_seconds)
    last = end.timestamp()
    count = max(1, int(span_seconds // step))
    ordered = [sorted(samples, key=attrgetter("at")) for samples in series]
    times = [[s.at for s in samples] for samples in ordered]
    points = []
    for i in range(count, 0, -1):
        stop = last - (i - 1) * step
        # Each series cut once here by bisection (window_counts would cut the whole series per interval).
        cut = [
            samples[max(0, bisect_right(ats, stop - step) - 1) : bisect_right(ats, stop)]
            for samples, ats in zip(ordered, times, strict=True)
        ]
        counts, covered = window_counts(cut, stop - step, stop)
        points.append(point(stop, step, counts, covered, sla))
    return points


def intervals(span_seconds: float, step_seconds: float) -> tuple[float, int]:
    """The interval length (``step_for``) and how many intervals cover the span."""
    step = step_for(span_seconds, step_seconds)
    return step, max(1, int(span_seconds // step))


def timeline_of_slices(
    series: Sequence[tuple[dict[int, Slice], FirstSample | None]],
    sla: SlaConfig,
    end: datetime,
    step: float,
    count: int,
) -> tuple[list[TrafficPoint], list[list[float | None]]]:
    """``timeline`` from per-interval summaries, and each series' own throughput per interval.

    Per series: its slices by interval index (0: the interval ending at ``end``; ``count``: every sample
    read before the first interval) and its oldest sample read (needed when none precedes an interval).
    """
    last = end.timestamp()
    totals: list[tuple[Counts, float]] = [(ZERO, 0.0)] * count
    own: list[list[float | None]] = []
    for slices, first in series:
        rates: list[float | None] = [None] * count
        base_at = slices[count].last_at if count in slices and slices[count].samples else None
        for j in range(count - 1, -1, -1):
            stop = last - j * step
            part = slices.get(j)
            counts, covered = slices_increase([part] if part else [], base_at, first, stop - step)
            total, longest = totals[count - 1 - j]
            totals[count - 1 - j] = (total + counts, max(longest, covered))
            rates[count - 1 - j] = counts.requests / step if covered > 0 else None
            if part and part.samples:
                base_at = part.last_at
        own.append(rates)
    points = [
        point(last - (count - 1 - k) * step, step, counts, covered, sla) for k, (counts, covered) in enumerate(totals)
    ]
    return points, own


def point(stop: float, step: float, counts: Counts, covered: float, sla: SlaConfig) -> TrafficPoint:
    """The figures of the interval ``(stop - step, stop]``."""
    shown = figures("interval", int(step), counts, covered, sla)
    return TrafficPoint(
        end=datetime.fromtimestamp(stop, UTC),
        requests=counts.requests,
        throughput=counts.requests / step if covered > 0 else None,
        p50_ms=shown.p50_ms,
        p95_ms=shown.p95_ms,
        p99_ms=shown.p99_ms,
        error_rate=shown.error_rate,
        fallback_rate=shown.fallback_rate,
    )
