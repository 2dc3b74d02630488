"""Tests for harbourmaster.core.metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from harbourmaster.core.metrics import (
    SUPPORTED_METRICS,
    default_metrics,
    evaluate,
    lower_is_better,
    validate_metric_names,
)
from harbourmaster.errors import EntrypointError, InvalidInputError


@pytest.fixture(scope="module")
def binary() -> tuple[Any, pd.DataFrame, pd.Series]:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    return model, x, y


@pytest.fixture(scope="module")
def multiclass() -> tuple[Any, pd.DataFrame, pd.Series]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return model, x, y


@pytest.fixture(scope="module")
def regression() -> tuple[Any, pd.DataFrame, pd.Series]:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    return LinearRegression().fit(x, y), x, y


def test_validate_metric_names() -> None:
    assert validate_metric_names([" accuracy", "f1", "accuracy", "neg_log_loss"]) == [
        "accuracy",
        "f1",
        "neg_log_loss",
    ]
    assert validate_metric_names([]) == []


def test_unknown_metric_message_and_hint() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_metric_names(["accuracy", "acurracy"])
    assert info.value.message == "unknown metric 'acurracy'"
    hint = info.value.hint or ""
    assert "did you mean 'accuracy'" in hint
    for name in SUPPORTED_METRICS:
        assert name in hint
    assert "get_scorer_names" in hint


def test_non_string_metric_name() -> None:
    with pytest.raises(InvalidInputError, match="must be strings"):
        validate_metric_names([3])  # type: ignore[list-item]


def test_default_metrics_and_direction() -> None:
    assert default_metrics("classification") == ["accuracy", "f1", "roc_auc"]
    assert default_metrics("regression") == ["r2", "rmse", "mae"]
    assert default_metrics("other") == []
    with pytest.raises(InvalidInputError, match="unknown task"):
        default_metrics("ranking")
    assert all(lower_is_better(n) for n in ("log_loss", "rmse", "mae", "mse"))
    assert not any(lower_is_better(n) for n in ("accuracy", "r2", "roc_auc", "neg_log_loss"))


def test_binary_classification(binary: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = binary
    names = ["accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"]
    result = evaluate(model, x, y, names)
    assert list(result) == names
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, model.predict(x)))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, model.predict_proba(x)[:, 1]))
    assert result["f1"] == pytest.approx(skm.f1_score(y, model.predict(x)))
    assert result["log_loss"] > 0
    assert result["roc_auc"] > 0.95


def test_sklearn_scorer_names(binary: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = binary
    result = evaluate(model, x, y, ["neg_log_loss", "f1_weighted"])
    assert result["neg_log_loss"] < 0
    assert 0 < result["f1_weighted"] <= 1


def test_binary_string_labels_use_second_class_as_positive() -> None:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    y = pd.Series(["no", "no", "no", "yes", "yes", "yes"])
    model = LogisticRegression().fit(x, y)
    result = evaluate(model, x, y, ["f1", "precision", "recall", "roc_auc"])
    assert result["roc_auc"] == 1.0
    assert result["recall"] == 1.0


def test_multiclass(multiclass: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = multiclass
    result = evaluate(model, x, y, ["accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"])
    pred = model.predict(x)
    assert result["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, model.predict_proba(x), multi_class="ovr"))


def test_regression(regression: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = regression
    result = evaluate(model, x, y, ["r2", "rmse", "mae", "mse", "neg_mean_absolute_error"])
    pred = model.predict(x)
    assert result["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert result["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert result["mae"] > 0 and result["rmse"] > 0 and result["mse"] > 0
    assert result["neg_mean_absolute_error"] == pytest.approx(-result["mae"])


def test_roc_auc_without_predict_proba() -> None:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = SVC().fit(x.iloc[:200], y.iloc[:200])
    with pytest.raises(InvalidInputError) as info:
        evaluate(model, x.iloc[:50], y.iloc[:50], ["roc_auc"])
    assert "predict_proba" in info.value.message
    assert "accuracy" in (info.value.hint or "")


def test_classification_metric_on_regression(
    regression: tuple[Any, pd.DataFrame, pd.Series],
) -> None:
    model, x, y = regression
    with pytest.raises(InvalidInputError) as info:
        evaluate(model, x, y, ["accuracy"])
    assert "metric 'accuracy' cannot be computed" in info.value.message
    assert "classification metric" in (info.value.hint or "")


def test_regression_metric_on_string_labels() -> None:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    y = pd.Series(["no", "no", "yes", "yes"])
    model = LogisticRegression().fit(x, y)
    with pytest.raises(InvalidInputError) as info:
        evaluate(model, x, y, ["rmse"])
    assert "metric 'rmse' cannot be computed" in info.value.message
    assert "regression metric" in (info.value.hint or "")


def test_roc_auc_single_class_holdout(binary: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = binary
    only_ones = y == 1
    with pytest.raises(InvalidInputError, match="roc_auc"), pytest.warns(Warning):
        evaluate(model, x[only_ones], y[only_ones], ["roc_auc"])


def test_undefined_metric_is_an_error(regression: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = regression
    with pytest.raises(InvalidInputError, match="undefined"), pytest.warns(Warning):
        evaluate(model, x.iloc[:1], y.iloc[:1], ["r2"])


def test_shape_and_empty_errors(regression: tuple[Any, pd.DataFrame, pd.Series]) -> None:
    model, x, y = regression
    with pytest.raises(InvalidInputError, match="rows"):
        evaluate(model, x, y.iloc[:5], ["r2"])
    with pytest.raises(InvalidInputError, match="empty"):
        evaluate(model, x.iloc[:0], y.iloc[:0], ["r2"])
    with pytest.raises(InvalidInputError, match="unknown metric"):
        evaluate(model, x, y, ["nope"])


def test_failing_model_is_entrypoint_error() -> None:
    class Broken:
        def predict(self, frame: pd.DataFrame) -> None:
            raise KeyError("column 'z' missing")

    with pytest.raises(EntrypointError, match="failed to predict"):
        evaluate(Broken(), pd.DataFrame({"a": [1]}), pd.Series([1]), ["accuracy"])
