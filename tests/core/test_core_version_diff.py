"""Tests for harbourmaster.core.version_diff."""

from __future__ import annotations

import math

import pytest

from harbourmaster.core.version_diff import MetricChange, diff_metrics


def test_higher_is_better_metric() -> None:
    [change] = diff_metrics({"accuracy": 0.8}, {"accuracy": 0.9})
    assert change.name == "accuracy"
    assert change.delta == pytest.approx(0.1)
    assert change.improved is True


def test_lower_is_better_metric() -> None:
    changes = {c.name: c for c in diff_metrics({"rmse": 2.0, "mae": 1.0}, {"rmse": 1.5, "mae": 2})}
    assert changes["rmse"].improved is True
    assert changes["rmse"].delta == pytest.approx(-0.5)
    assert changes["mae"].improved is False


def test_unchanged_is_not_improved() -> None:
    same = diff_metrics({"r2": 0.5}, {"r2": 0.5})[0]
    assert same.improved is None and same.delta == 0  # the same value is neither better nor worse


def test_missing_and_non_finite_sides() -> None:
    changes = diff_metrics({"a": 1.0, "b": math.nan}, {"b": 2.0, "c": 3.0})
    assert [c.name for c in changes] == ["a", "b", "c"]
    assert changes[0] == MetricChange(name="a", before=1.0, after=None, delta=None, improved=None)
    assert changes[1].before is None and changes[1].improved is None
    assert changes[2].before is None and changes[2].after == 3.0


def test_empty() -> None:
    assert diff_metrics({}, {}) == []
