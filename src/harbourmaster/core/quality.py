"""Model quality on production data: a window's predictions joined to the ground truth that arrived,
scored like the held-out evaluation, and compared with the version's held-out metrics. No I/O.

- classification: ``accuracy``, ``f1`` (binary: the positive class is the version's second class,
  as at evaluation; multi-class: macro average) and ``roc_auc`` (binary only, from the logged
  probability of the positive class);
- regression: ``rmse``, ``mae`` and ``r2``.

A metric *drops* when it is worse than the held-out figure by more than ``tolerance``, relative
to the held-out figure (``(baseline - value) / |baseline|``, the other way round for the lower-is-better
``rmse`` and ``mae``; an absolute difference when the baseline is 0). Nothing is judged on fewer
than ``min_labelled_rows`` labelled rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.metrics import lower_is_better

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "MetricComparison",
    "QualityReport",
    "QualitySettings",
    "class_key",
    "compare_metrics",
    "compute_quality",
    "relative_drop",
]

CLASSIFICATION: tuple[str, ...] = ("accuracy", "f1", "roc_auc")
REGRESSION: tuple[str, ...] = ("rmse", "mae", "r2")
Task = Literal["classification", "regression", "other"]


class QualitySettings(BaseModel):
    """``[monitoring.quality]`` of a project file."""

    model_config = ConfigDict(extra="forbid")

    window: str = "1d"
    tolerance: float = Field(default=0.05, gt=0.0, le=10.0)
    min_labelled_rows: int = Field(default=100, ge=1, le=10_000_000)
    metrics: list[str] | None = None  # the metrics judged (default: every one computed)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [name for name in value if name not in CLASSIFICATION + REGRESSION]
            if unknown:
                raise ValueError(
                    f"unknown quality metric(s) {', '.join(map(repr, unknown))}; "
                    f"use {', '.join(CLASSIFICATION + REGRESSION)}"
                )
        return value


class MetricComparison(BaseModel):
    """One metric of a window against the version's held-out figure."""

    metric: str
    value: float | None
    baseline: float | None  # the held-out metric recorded at registration (None: not recorded)
    drop: float | None  # relative drop (positive: worse than held out)
    degraded: bool


class QualityReport(BaseModel):
    """The model quality of one version over one window of one deployment."""

    id: str
    project: str
    environment: str
    version: int
    task: str
    window: str
    window_start: datetime | None
    window_end: datetime | None
    rows: int  # answered rows of the version in the window
    labelled: int  # of which have ground truth (of a known class)
    unlabelled: int  # still waiting for ground truth
    unknown_labels: int  # ground truth naming a class the version does not have (left out)
    min_labelled_rows: int
    tolerance: float
    judged: bool  # enough labelled rows to judge
    degraded: bool  # judged, and a metric dropped beyond tolerance
    metrics: list[MetricComparison]
    notes: list[str] = Field(default_factory=list)
    computed_at: datetime

    @property
    def values(self) -> dict[str, float]:
        return {m.metric: m.value for m in self.metrics if m.value is not None}

    @property
    def worst_drop(self) -> float | None:
        drops = [m.drop for m in self.metrics if m.drop is not None]
        return max(drops) if drops else None


def class_key(value: Any) -> str | None:
    """A label as the text key of its class, whatever way it was written: ``1``, ``1.0``, ``"1"`` all
    give ``"1"``; JSON ``true`` and Python ``True`` give ``"True"``. None (missing) stays None."""
    import numpy as np

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else str(float(value))
    text = str(value)
    if text in ("true", "false"):
        return text.capitalize()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and text.strip().lstrip("+-").replace(".", "", 1).isdigit():
        return str(int(number))
    return text


def relative_drop(metric: str, value: float, baseline: float) -> float:
    """How much worse ``value`` is than ``baseline`` (positive: worse), relative to ``|baseline|``."""
    worse = value - baseline if lower_is_better(metric) else baseline - value
    return worse / abs(baseline) if baseline != 0 else worse


def compare_metrics(
    values: dict[str, float | None], baseline: dict[str, Any], tolerance: float, judged: Sequence[str] | None = None
) -> list[MetricComparison]:
    """Each metric of ``values`` against the same name in ``baseline``; degraded when it drops beyond tolerance
    (only the ``judged`` names are, when given)."""
    rows = []
    for name, value in values.items():
        reference = baseline.get(name)
        reference = float(reference) if isinstance(reference, int | float) and math.isfinite(reference) else None
        drop = relative_drop(name, value, reference) if value is not None and reference is not None else None
        counted = judged is None or name in judged
        rows.append(
            MetricComparison(
                metric=name,
                value=value,
                baseline=reference,
                drop=drop,
                degraded=bool(counted and drop is not None and drop > tolerance),
            )
        )
    return rows


def compute_quality(
    frame: pd.DataFrame, task: Task, classes: Sequence[Any] | None
) -> tuple[dict[str, float | None], int, list[str]]:
    """Metrics of the labelled rows of ``frame`` (columns ``prediction``, ``truth``, and for a binary
    classifier ``probability``: the positive class's), the number of rows used, and notes on any metric
    left undefined. Rows whose truth is missing, or names no class of ``classes``, are not used."""
    import numpy as np
    import pandas as pd
    from sklearn import metrics as skm

    notes: list[str] = []
    if task == "regression":
        prediction = pd.to_numeric(frame["prediction"], errors="coerce")
        truth = pd.to_numeric(frame["truth"], errors="coerce")
        usable = prediction.notna() & truth.notna()
        y, p = truth[usable].to_numpy(float), prediction[usable].to_numpy(float)
        if len(y) == 0:
            return dict.fromkeys(REGRESSION), 0, notes
        r2: float | None = None
        if len(y) >= 2 and np.ptp(y) > 0:
            r2 = float(skm.r2_score(y, p))
        else:
            notes.append("r2 is undefined on fewer than two distinct true values")
        values: dict[str, float | None] = {
            "rmse": float(skm.root_mean_squared_error(y, p)),
            "mae": float(skm.mean_absolute_error(y, p)),
            "r2": r2,
        }
        return values, len(y), notes
    if task != "classification":
        notes.append(f"no quality metrics for a model of task {task!r}")
        return {}, 0, notes
    truth = frame["truth"].map(class_key)
    prediction = frame["prediction"].map(class_key)
    keys = [class_key(c) for c in classes] if classes else sorted(set(truth.dropna()) | set(prediction.dropna()))
    usable = truth.notna() & prediction.notna() & truth.isin(keys)
    y, p = truth[usable].to_numpy(object), prediction[usable].to_numpy(object)
    if len(y) == 0:
        return dict.fromkeys(CLASSIFICATION), 0, notes
    values = {"accuracy": float(skm.accuracy_score(y, p))}
    if len(keys) == 2:
        values["f1"] = float(skm.f1_score(y, p, pos_label=keys[1], zero_division=0))
        scored = pd.to_numeric(frame["probability"], errors="coerce")[usable] if "probability" in frame else None
        if scored is None or scored.isna().any():
            values["roc_auc"] = None
            notes.append("roc_auc needs the logged probability of every labelled row")
        elif len(set(y)) < 2:
            values["roc_auc"] = None
            notes.append("roc_auc is undefined when the labelled rows hold one class only")
        else:
            values["roc_auc"] = float(skm.roc_auc_score(y == keys[1], scored.to_numpy(float)))
    else:
        values["f1"] = float(skm.f1_score(y, p, average="macro", zero_division=0))
        values["roc_auc"] = None
        notes.append("roc_auc is measured for binary classifiers only")
    return values, len(y), notes
