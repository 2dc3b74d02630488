"""The pure parts of retraining: the time split of labelled rows, the paired comparison of a challenger
with the champion (a tie is not a win), and the feature-by-feature drift comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from harbourmaster.core.drift import DriftReport, FeatureDrift
from harbourmaster.core.retraining import compare_challenger, compare_drift, require_labelled_rows, split_recent
from harbourmaster.errors import DataProblemError

HEADER = {
    "id": "r1",
    "project": "p",
    "environment": "prod",
    "candidate": 2,
    "champion": 1,
    "window_start": None,
    "window_end": None,
    "computed_at": datetime(2026, 1, 1, tzinfo=UTC),
}


def test_the_newest_rows_are_held_out_and_rows_tied_on_the_boundary_go_with_them() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [start + timedelta(seconds=i) for i in range(8)] + [start + timedelta(seconds=7)] * 2
    frame = pd.DataFrame({"ts": stamps, "request_id": [f"r{i}" for i in range(10)], "row": 0})
    train, held = split_recent(frame.sample(frac=1, random_state=1), 0.2)
    assert len(held) == 3 and len(train) == 7  # 20 % is 2 rows; the third shares their instant
    assert train["ts"].max() < held["ts"].min()
    with pytest.raises(DataProblemError, match="same instant"):
        split_recent(frame.assign(ts=start), 0.2)
    with pytest.raises(DataProblemError, match="only 3 labelled"):
        require_labelled_rows(3, 50, "prod")


def test_identical_predictions_are_a_tie_with_p_one() -> None:
    truth = np.array([0, 1] * 100)
    predicted = np.where(np.arange(200) % 3 == 0, 1 - truth, truth)
    frame = pd.DataFrame({"truth": truth, "candidate": predicted, "champion": predicted})
    report = compare_challenger(frame, task="classification", classes=[0, 1], header=HEADER)
    assert report.verdict == "tie" and report.p_value == 1.0 and report.candidate_wins == report.champion_wins == 0
    assert report.interval == (0.0, 0.0) and "does not beat" in report.summary


def test_a_small_difference_on_few_rows_is_a_tie_a_large_one_wins_a_reverse_one_loses() -> None:
    truth = np.array([0, 1] * 20)
    champion = truth.copy()
    champion[:4] = 1 - champion[:4]  # the champion misses 4 of 40, the candidate 1: not significant
    candidate = truth.copy()
    candidate[0] = 1 - candidate[0]
    small = compare_challenger(
        pd.DataFrame({"truth": truth, "candidate": candidate, "champion": champion}),
        task="classification",
        classes=[0, 1],
        header=HEADER,
    )
    assert small.verdict == "tie" and small.p_value > 0.05 and small.improvement > 0
    champion[:20] = 1 - truth[:20]  # now it misses 20 of 40
    large = compare_challenger(
        pd.DataFrame({"truth": truth, "candidate": candidate, "champion": champion}),
        task="classification",
        classes=[0, 1],
        header=HEADER,
    )
    assert large.verdict == "beats" and large.p_value < 0.001 and large.interval[0] > 0
    reverse = compare_challenger(
        pd.DataFrame({"truth": truth, "candidate": champion, "champion": candidate}),
        task="classification",
        classes=[0, 1],
        header=HEADER,
    )
    assert reverse.verdict == "worse" and reverse.interval[1] < 0


def test_regression_uses_paired_absolute_errors() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, 300)
    better = truth + rng.normal(0, 0.1, 300)
    worse = truth + rng.normal(0, 1.0, 300)
    frame = pd.DataFrame({"truth": truth, "candidate": better, "champion": worse})
    report = compare_challenger(frame, task="regression", classes=None, header=HEADER)
    assert report.verdict == "beats" and "Wilcoxon" in report.test and report.loss == "absolute error"
    metrics = {m.metric: m for m in report.metrics}
    assert metrics["rmse"].better and metrics["mae"].better and metrics["r2"].better
    noise = truth + rng.normal(0, 0.5, 300)
    same = compare_challenger(
        pd.DataFrame({"truth": truth, "candidate": noise, "champion": noise + rng.normal(0, 1e-3, 300)}),
        task="regression",
        classes=None,
        header=HEADER,
    )
    assert same.verdict == "tie", same.summary


def _report(version: int, drifted: dict[str, bool]) -> DriftReport:
    features = [
        FeatureDrift(feature=name, kind="numeric", statistic=0.5, drifted=flag, score=2.0 if flag else 0.5)
        for name, flag in drifted.items()
    ]
    return DriftReport(
        id=f"d{version}",
        project="p",
        environment="prod",
        version=version,
        window="1d",
        rows=500,
        reference="sample",
        reference_rows=500,
        drift_share=0.5,
        drifted_share=0.0,
        drifted=False,
        features=features,
        computed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_drift_is_fixed_feature_by_feature() -> None:
    fixed = compare_drift(_report(2, {"a": False, "b": True}), _report(1, {"a": True, "b": True}))
    assert fixed.passed and fixed.fixed == ["a"] and fixed.still == ["b"] and "still drifted: b" in fixed.summary
    moved = compare_drift(_report(2, {"a": False, "b": True}), _report(1, {"a": True, "b": False}))
    assert not moved.passed and moved.new == ["b"] and "drifts newly on b" in moved.summary
    unchanged = compare_drift(_report(2, {"a": True}), _report(1, {"a": True}))
    assert not unchanged.passed and "fixes none" in unchanged.summary
    calm = compare_drift(_report(2, {"a": False}), _report(1, {"a": False}))
    assert calm.passed and "no feature drifts" in calm.summary
