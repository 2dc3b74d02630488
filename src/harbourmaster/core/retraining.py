"""Retraining on production data and proving the fix: pure logic, no I/O.

- ``split_recent``: the labelled production rows split by time; the most recent ones are held out of
  training and become the evaluation set of the challenger (rows tied on the boundary instant all go
  to the held-out side, so "held out" is simply "logged at or after the boundary").
- ``compare_challenger``: the candidate and the champion scored on the same labelled rows, metrics side
  by side (``core/quality.compute_quality``), a paired test and a paired bootstrap confidence interval,
  so that a tie is not called a win:

  * classification: McNemar's exact test on the paired correctness (the discordant rows only);
  * regression: Wilcoxon's signed-rank test on the paired absolute errors.

  ``beats`` needs the candidate better on the paired loss and the test significant at ``alpha``;
  ``worse`` is the mirror; anything else is a ``tie``.
- ``compare_drift``: the same production window measured against the candidate's reference and the
  champion's, feature by feature: the drift is fixed when no feature drifts against the candidate that
  did not drift against the champion, and at least one that drifted no longer does (or none drifted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from harbourmaster.core.drift_window import window_phrase
from harbourmaster.core.metrics import lower_is_better
from harbourmaster.core.quality import CLASSIFICATION, REGRESSION, class_key, compute_quality
from harbourmaster.errors import DataProblemError

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.core.drift import DriftReport

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "ChallengerReport",
    "DriftComparison",
    "FeatureDriftPair",
    "MetricPair",
    "compare_challenger",
    "compare_drift",
    "require_labelled_rows",
    "split_recent",
]

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
Verdict = Literal["beats", "tie", "worse"]


def require_labelled_rows(labelled: int, minimum: int, where: str) -> None:
    """Refuse retraining on fewer than ``minimum`` labelled production rows."""
    if labelled < minimum:
        raise DataProblemError(
            f"only {labelled} labelled production row(s) in {where}; retraining needs at least {minimum}",
            "wait for more ground truth (feedback) to arrive, widen the window (--since an earlier date, or "
            "no --last), or lower [retrain] min_rows in harbourmaster.toml",
        )


def split_recent(frame: pd.DataFrame, holdout: float, *, ts: str = "ts") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows): the newest ``holdout`` share of ``frame`` by ``ts`` held out, every
    row logged at the boundary instant or later with them. Raises when either side would be empty."""
    ordered = frame.sort_values([ts, "request_id", "row"], kind="stable").reset_index(drop=True)
    count = len(ordered)
    held = max(1, math.ceil(count * holdout))
    if held >= count:
        raise DataProblemError(
            f"cannot hold out {holdout:.0%} of {count} labelled row(s) and still train on some",
            "use more labelled rows or a smaller [retrain] holdout",
        )
    boundary = ordered[ts].iloc[count - held]
    train = ordered[ordered[ts] < boundary]
    if train.empty:
        raise DataProblemError(
            f"all {count} labelled row(s) were logged at the same instant: nothing is older than the held-out rows",
            "wait for ground truth on later requests",
        )
    return train, ordered[ordered[ts] >= boundary]


class MetricPair(BaseModel):
    """One metric of the candidate and of the champion on the same rows."""

    metric: str
    candidate: float | None
    champion: float | None
    difference: float | None  # candidate - champion
    better: bool | None  # the candidate's figure is the better one (None: undefined or equal)


class ChallengerReport(BaseModel):
    """The candidate against the champion on the most recent labelled production rows held out of its training."""

    id: str
    project: str
    environment: str
    candidate: int
    champion: int
    task: str
    rows: int
    window_start: datetime | None
    window_end: datetime | None
    metrics: list[MetricPair]
    test: str  # the paired test's name
    statistic: float | None
    p_value: float
    candidate_wins: int  # classification: rows only the candidate got right; regression: rows with a smaller error
    champion_wins: int
    loss: str  # what the paired loss and the interval are of: "error rate" or "absolute error"
    improvement: float  # mean paired loss of the champion minus the candidate's (positive: the candidate is better)
    interval: tuple[float, float]  # paired bootstrap confidence interval of the improvement
    confidence: float
    alpha: float
    verdict: Verdict
    summary: str
    notes: list[str] = Field(default_factory=list)
    computed_at: datetime


def _losses(task: str, truth: Sequence[Any], predicted: Sequence[Any]) -> Any:
    import numpy as np

    if task == "regression":
        return np.abs(np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float))
    return np.asarray([class_key(p) != class_key(t) for p, t in zip(predicted, truth, strict=True)], dtype=float)


def _bootstrap(difference: Any, confidence: float) -> tuple[float, float]:
    """Percentile interval of the mean of ``difference`` over paired resamples of the rows."""
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(difference)
    means = np.empty(BOOTSTRAP_RESAMPLES)
    step = max(1, 2_000_000 // max(n, 1))  # resamples per batch: bounded memory on large windows
    for start in range(0, BOOTSTRAP_RESAMPLES, step):
        stop = min(start + step, BOOTSTRAP_RESAMPLES)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = difference[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def compare_challenger(
    frame: pd.DataFrame,
    *,
    task: str,
    classes: Sequence[Any] | None,
    alpha: float = 0.05,
    header: dict[str, Any],
) -> ChallengerReport:
    """Compare the columns ``candidate`` and ``champion`` (predictions) with ``truth`` on the same rows
    (``candidate_probability``/``champion_probability``: the positive class's, for a binary classifier).
    ``header`` fills the report's identity fields (id, project, environment, versions, window, computed_at)."""
    import numpy as np
    from scipy import stats

    if frame.empty:
        raise DataProblemError(
            "no labelled production row to compare the versions on",
            "wait for ground truth on requests logged after the retraining window",
        )
    notes: list[str] = []
    side: dict[str, dict[str, float | None]] = {}
    for who in ("candidate", "champion"):
        scored = frame.rename(columns={who: "prediction"})[["prediction", "truth"]].copy()
        if f"{who}_probability" in frame:
            scored["probability"] = frame[f"{who}_probability"]
        values, _used, why = compute_quality(scored, task, classes)  # type: ignore[arg-type]
        side[who] = values
        notes += [f"{who}: {note}" for note in why]
    names = [n for n in (REGRESSION if task == "regression" else CLASSIFICATION) if n in side["candidate"]]
    pairs = []
    for name in names:
        mine, theirs = side["candidate"].get(name), side["champion"].get(name)
        difference = mine - theirs if mine is not None and theirs is not None else None
        better = None
        if difference is not None and difference != 0:
            better = difference < 0 if lower_is_better(name) else difference > 0
        pairs.append(MetricPair(metric=name, candidate=mine, champion=theirs, difference=difference, better=better))
    candidate_loss = _losses(task, frame["truth"], frame["candidate"])
    champion_loss = _losses(task, frame["truth"], frame["champion"])
    improvement = champion_loss - candidate_loss
    candidate_wins = int((improvement > 0).sum())
    champion_wins = int((improvement < 0).sum())
    if task == "regression":
        test, loss = "Wilcoxon signed-rank on paired absolute errors", "absolute error"
        if candidate_wins + champion_wins == 0:
            statistic, p_value = None, 1.0
        else:
            result = stats.wilcoxon(champion_loss, candidate_loss, zero_method="wilcox", alternative="two-sided")
            statistic, p_value = float(result.statistic), float(result.pvalue)
    else:
        test, loss = "McNemar exact on paired correctness", "error rate"
        discordant = candidate_wins + champion_wins
        statistic = float(min(candidate_wins, champion_wins))
        p_value = 1.0 if discordant == 0 else float(stats.binomtest(candidate_wins, discordant, 0.5).pvalue)
    confidence = 1 - alpha
    interval = _bootstrap(improvement, confidence)
    mean_gain = float(np.mean(improvement))
    if p_value < alpha and mean_gain > 0 and candidate_wins > champion_wins:
        verdict: Verdict = "beats"
    elif p_value < alpha and mean_gain < 0 and champion_wins > candidate_wins:
        verdict = "worse"
    else:
        verdict = "tie"
    candidate, champion = header["candidate"], header["champion"]
    figures = ", ".join(
        f"{p.metric} {p.candidate:.4f} vs {p.champion:.4f}"
        for p in pairs
        if p.candidate is not None and p.champion is not None
    )
    said = {
        "beats": f"v{candidate} beats champion v{champion}",
        "worse": f"v{candidate} is worse than champion v{champion}",
        "tie": f"v{candidate} does not beat champion v{champion} (a tie at {confidence:.0%} confidence)",
    }[verdict]
    summary = (
        f"{said} on {len(frame)} held-out labelled production rows: {figures}; {test}: "
        f"{candidate_wins} vs {champion_wins} rows, p = {_p(p_value)}; mean {loss} lower by "
        f"{mean_gain:.4g} ({confidence:.0%} CI {interval[0]:.4g} .. {interval[1]:.4g})"
    )
    return ChallengerReport(
        **header,
        task=task,
        rows=len(frame),
        metrics=pairs,
        test=test,
        statistic=statistic,
        p_value=p_value,
        candidate_wins=candidate_wins,
        champion_wins=champion_wins,
        loss=loss,
        improvement=mean_gain,
        interval=interval,
        confidence=confidence,
        alpha=alpha,
        verdict=verdict,
        summary=summary,
        notes=notes,
    )


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


class FeatureDriftPair(BaseModel):
    """One feature of the current window against each version's reference."""

    feature: str
    candidate_score: float | None
    champion_score: float | None
    candidate_drifted: bool
    champion_drifted: bool
    change: Literal["fixed", "new", "still drifted", "fine"]


class DriftComparison(BaseModel):
    """The current window's drift against the candidate's reference and the champion's, feature by feature."""

    passed: bool
    summary: str
    features: list[FeatureDriftPair]
    fixed: list[str]
    new: list[str]
    still: list[str]


def compare_drift(mine: DriftReport, theirs: DriftReport) -> DriftComparison:
    """``mine``: the window against the candidate's reference; ``theirs``: against the champion's."""
    measured = {f.feature: f for f in mine.features}
    rows: list[FeatureDriftPair] = []
    for feature in theirs.features:
        own = measured.pop(feature.feature, None)
        rows.append(_pair(feature.feature, own, feature))
    rows += [_pair(name, own, None) for name, own in measured.items()]
    fixed = [r.feature for r in rows if r.change == "fixed"]
    new = [r.feature for r in rows if r.change == "new"]
    still = [r.feature for r in rows if r.change == "still drifted"]
    had = len(fixed) + len(still)
    passed = not new and (bool(fixed) or had == 0)
    window = f"{theirs.rows} rows of {theirs.environment} ({window_phrase(theirs.window)})"
    if passed and had == 0:
        summary = f"no feature drifts on {window} against either v{mine.version}'s or v{theirs.version}'s reference"
    elif passed:
        summary = f"v{mine.version} fixes the drift of {', '.join(fixed)} on {window}" + (
            f"; still drifted: {', '.join(still)}" if still else ""
        )
    else:
        problems = []
        if new:
            problems.append(f"drifts newly on {', '.join(new)}")
        if not fixed:
            problems.append(f"fixes none of the drifted feature(s) {', '.join(still)}")
        summary = f"v{mine.version} {' and '.join(problems)} on {window} (champion v{theirs.version})"
    return DriftComparison(passed=passed, summary=summary, features=rows, fixed=fixed, new=new, still=still)


def _pair(name: str, mine: Any, theirs: Any) -> FeatureDriftPair:
    candidate = bool(mine is not None and mine.drifted)
    champion = bool(theirs is not None and theirs.drifted)
    change = {
        (False, True): "fixed",
        (True, False): "new",
        (True, True): "still drifted",
        (False, False): "fine",
    }[(candidate, champion)]

    def score(feature: Any) -> float | None:
        if feature is None or feature.statistic is None:
            return None
        return float(feature.score) if math.isfinite(feature.score) else None

    return FeatureDriftPair(
        feature=name,
        candidate_score=score(mine),
        champion_score=score(theirs),
        candidate_drifted=candidate,
        champion_drifted=champion,
        change=change,
    )
