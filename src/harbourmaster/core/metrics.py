"""Evaluation of a fitted estimator on held-out data.

Supported metric names (``SUPPORTED_METRICS``):

- classification: ``accuracy``, ``balanced_accuracy``, ``f1``, ``precision``,
  ``recall`` (binary: the positive class is the estimator's second class,
  ``classes_[1]``; multiclass: ``macro`` average), ``roc_auc`` (binary: from
  ``predict_proba[:, 1]``; multiclass: one-vs-rest), ``log_loss``;
- regression: ``r2``, ``rmse``, ``mae``, ``mse``;
- any other name that ``sklearn.metrics.get_scorer`` accepts (e.g.
  ``neg_median_absolute_error``, ``f1_weighted``), reported as sklearn's scorer
  returns it.

Friendly names where lower is better (``log_loss``, ``rmse``, ``mae``, ``mse``)
are reported as positive values; see ``lower_is_better``.

Every version's metrics carry a provenance (``MetricsProvenance``): ``computed``
when the platform's training service evaluated the pipeline on a held-out split
it drew itself, ``reported`` for numbers a registrant supplied (typed, computed
in a notebook, or uploaded to the control plane, which cannot recompute them
without running the author's code). Metric gates use computed numbers only
(unless an environment allows reported ones), evaluated on enough rows; see
``core.provenance``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harbourmaster.errors import EntrypointError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "SUPPORTED_METRICS",
    "default_metrics",
    "evaluate",
    "lower_is_better",
    "validate_metric_names",
]

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS: tuple[str, ...] = ("r2", "rmse", "mae", "mse")
SUPPORTED_METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS
"""Friendly metric names; any ``sklearn.metrics.get_scorer`` name is accepted too."""
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae", "mse"})

_PROBA_METRICS = frozenset({"roc_auc", "log_loss"})


def lower_is_better(name: str) -> bool:
    """True if a smaller value of metric ``name`` is better (log_loss, rmse, mae, mse)."""
    return name in LOWER_IS_BETTER


def default_metrics(task: str) -> list[str]:
    """Metrics computed when a project names none, by task kind."""
    if task == "classification":
        return ["accuracy", "f1", "roc_auc"]
    if task == "regression":
        return ["r2", "rmse", "mae"]
    if task == "other":
        return []
    raise InvalidInputError(f"unknown task {task!r}", "use 'classification', 'regression' or 'other'")


def _sklearn_scorer_names() -> set[str]:
    from sklearn import metrics as skm

    return set(skm.get_scorer_names())


def validate_metric_names(names: Sequence[str]) -> list[str]:
    """Check metric names and return them stripped and deduplicated, order kept.

    Raises ``InvalidInputError`` naming the first unknown metric.
    """
    if isinstance(names, str):
        names = [names]
    scorers = _sklearn_scorer_names()
    result: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            raise InvalidInputError(
                f"metric names must be strings, got {raw!r}",
                f"use names such as {', '.join(SUPPORTED_METRICS)}",
            )
        name = raw.strip()
        if name not in SUPPORTED_METRICS and name not in scorers:
            close = difflib.get_close_matches(name, [*SUPPORTED_METRICS, *sorted(scorers)], n=1)
            suggestion = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidInputError(
                f"unknown metric {raw!r}",
                f"{suggestion}use one of {', '.join(SUPPORTED_METRICS)}, "
                "or any name listed by sklearn.metrics.get_scorer_names()",
            )
        if name not in result:
            result.append(name)
    return result


class _Predictions:
    """Lazily computed predictions, shared between metrics."""

    def __init__(self, estimator: Any, features: pd.DataFrame) -> None:
        self.estimator = estimator
        self.features = features
        self._labels: Any = None
        self._proba: Any = None

    @property
    def labels(self) -> np.ndarray:
        import numpy as np

        if self._labels is None:
            try:
                self._labels = np.asarray(self.estimator.predict(self.features))
            except Exception as exc:
                raise EntrypointError(
                    f"the model failed to predict on the evaluation data: {exc}",
                    "check that the pipeline accepts the training features unchanged",
                ) from exc
        return self._labels

    @property
    def proba(self) -> np.ndarray:
        import numpy as np

        if self._proba is None:
            if not callable(getattr(self.estimator, "predict_proba", None)):
                raise InvalidInputError(
                    "metrics roc_auc and log_loss need class probabilities, but the model has no predict_proba",
                    "use a classifier with predict_proba (e.g. SVC(probability=True)) "
                    "or choose other metrics such as accuracy or f1",
                )
            try:
                self._proba = np.asarray(self.estimator.predict_proba(self.features))
            except Exception as exc:
                raise EntrypointError(
                    f"the model failed to compute probabilities on the evaluation data: {exc}",
                    "check that the pipeline accepts the training features unchanged",
                ) from exc
        return self._proba


def _classes(estimator: Any, target: pd.Series, preds: _Predictions) -> np.ndarray:
    import numpy as np

    classes = getattr(estimator, "classes_", None)
    if classes is None:
        steps = getattr(estimator, "steps", None)
        if steps:
            classes = getattr(steps[-1][1], "classes_", None)
    if classes is not None:
        return np.asarray(classes)
    return np.unique(np.concatenate([np.asarray(target, dtype=object), preds.labels.astype(object)]))


def _averaged(func: Callable[..., float], y: np.ndarray, preds: _Predictions, classes: np.ndarray) -> float:
    if len(classes) == 2:
        return float(func(y, preds.labels, pos_label=classes[1], zero_division=0))
    return float(func(y, preds.labels, average="macro", zero_division=0))


def _friendly(name: str, y: np.ndarray, preds: _Predictions, estimator: Any) -> float:
    import pandas as pd
    from sklearn import metrics as skm

    if name == "accuracy":
        return float(skm.accuracy_score(y, preds.labels))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, preds.labels))
    if name == "r2":
        return float(skm.r2_score(y, preds.labels))
    if name == "rmse":
        return float(skm.root_mean_squared_error(y, preds.labels))
    if name == "mae":
        return float(skm.mean_absolute_error(y, preds.labels))
    if name == "mse":
        return float(skm.mean_squared_error(y, preds.labels))
    classes = _classes(estimator, pd.Series(y), preds)
    if name in ("f1", "precision", "recall"):
        func = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
        return _averaged(func[name], y, preds, classes)
    proba = preds.proba
    if name == "roc_auc":
        if proba.ndim == 2 and proba.shape[1] == 2:
            return float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=list(classes)))
    if name == "log_loss":
        return float(skm.log_loss(y, proba, labels=list(classes)))
    raise AssertionError(f"unhandled metric {name}")  # pragma: no cover


def evaluate(estimator: Any, features: pd.DataFrame, target: pd.Series, names: Sequence[str]) -> dict[str, float]:
    """Score a fitted ``estimator`` on ``features``/``target`` with each metric in ``names``.

    Raises ``InvalidInputError`` when a metric is unknown or cannot apply (e.g.
    ``roc_auc`` without ``predict_proba``, a classification metric on a continuous
    target, or a metric that comes out undefined), and ``EntrypointError`` when the
    model itself fails to predict.
    """
    import numpy as np
    from sklearn import metrics as skm

    checked = validate_metric_names(names)
    if len(features) != len(target):
        raise InvalidInputError(
            f"features have {len(features)} rows but the target has {len(target)}",
            "pass the features and target of the same held-out rows",
        )
    if len(target) == 0:
        raise InvalidInputError("cannot evaluate on an empty held-out set", "use more data or a larger holdout")
    preds = _Predictions(estimator, features)
    y = np.asarray(target)
    results: dict[str, float] = {}
    for name in checked:
        try:
            if name in SUPPORTED_METRICS:
                value = _friendly(name, y, preds, estimator)
            else:
                value = float(skm.get_scorer(name)(estimator, features, target))
        except (InvalidInputError, EntrypointError):
            raise
        except Exception as exc:
            kind = (
                "a regression"
                if name in REGRESSION_METRICS
                else "a classification"
                if name in CLASSIFICATION_METRICS
                else "this"
            )
            raise InvalidInputError(
                f"metric {name!r} cannot be computed for this model and target: {exc}",
                f"{name!r} is {kind} metric; choose metrics that match the task "
                f"(classification: {', '.join(CLASSIFICATION_METRICS)}; "
                f"regression: {', '.join(REGRESSION_METRICS)})",
            ) from exc
        if not math.isfinite(value):
            raise InvalidInputError(
                f"metric {name!r} is undefined on the held-out data (got {value})",
                "use a larger or stratified holdout so every class appears, or another metric",
            )
        results[name] = value
    return results
