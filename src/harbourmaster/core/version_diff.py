"""Differences between two versions' metrics."""

from __future__ import annotations

import math

from pydantic import BaseModel

from harbourmaster.core.metrics import lower_is_better

__all__ = ["MetricChange", "diff_metrics"]


class MetricChange(BaseModel):
    """One metric before and after; ``improved`` is None when the value is the same or it cannot be told."""

    name: str
    before: float | None = None
    after: float | None = None
    delta: float | None = None
    improved: bool | None = None


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def diff_metrics(old: dict[str, float], new: dict[str, float]) -> list[MetricChange]:
    """Compare metrics of an old and a new version, old names first, then new ones.

    ``delta`` is ``after - before``; ``improved`` follows ``lower_is_better`` and is
    None for an unchanged value (neither better nor worse) and when either side is missing or not finite.
    """
    names = list(old) + [name for name in new if name not in old]
    changes: list[MetricChange] = []
    for name in names:
        before, after = _clean(old.get(name)), _clean(new.get(name))
        delta = improved = None
        if before is not None and after is not None:
            delta = after - before
            if delta != 0:
                improved = delta < 0 if lower_is_better(name) else delta > 0
        changes.append(MetricChange(name=name, before=before, after=after, delta=delta, improved=improved))
    return changes
