"""Tests for harbourmaster.core.schema."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from harbourmaster.core.schema import (
    ColumnSchema,
    InputSchema,
    OutputSchema,
    diff_input_schemas,
    diff_output_schemas,
    infer_input_schema,
    infer_output_schema,
)


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([30, 40, 50, 60], dtype="int64"),
            "income": [1.5, np.nan, 3.0, 4.5],
            "plan": ["basic", "pro", None, "basic"],
            "active": [True, False, True, True],
            "region": pd.Categorical(["n", "s", "n", "e"], categories=["n", "s", "e", "w"]),
            "since": pd.to_datetime(["2020-01-01", "2021-01-01", None, "2022-01-01"]),
            "score": pd.array([1, None, 3, 4], dtype="Int64"),
            "flag": pd.array([True, None, False, True], dtype="boolean"),
        }
    )


def test_infer_dtypes_nullability_categories_ranges() -> None:
    schema = infer_input_schema(_mixed_frame())
    assert schema.names == [
        "age",
        "income",
        "plan",
        "active",
        "region",
        "since",
        "score",
        "flag",
    ]
    by = {c.name: c for c in schema.columns}
    assert by["age"].dtype == "integer" and not by["age"].nullable
    assert (by["age"].minimum, by["age"].maximum) == (30.0, 60.0)
    assert by["age"].categories is None
    assert by["income"].dtype == "float" and by["income"].nullable
    assert (by["income"].minimum, by["income"].maximum) == (1.5, 4.5)
    assert by["plan"].dtype == "string" and by["plan"].nullable
    assert by["plan"].categories == ["basic", "pro"]
    assert by["plan"].minimum is None
    assert by["active"].dtype == "boolean" and by["active"].categories == [False, True]
    assert by["region"].dtype == "category"
    assert by["region"].categories == ["n", "s", "e", "w"]  # declared categories, in order
    assert by["since"].dtype == "datetime" and by["since"].nullable
    assert by["since"].categories is None  # a range of dates (seconds since the epoch), never a list of them
    assert (by["since"].minimum, by["since"].maximum) == (1577836800.0, 1640995200.0)
    assert by["score"].dtype == "integer" and by["score"].nullable
    assert by["score"].maximum == 4.0
    assert by["flag"].dtype == "boolean" and by["flag"].nullable
    assert by["flag"].categories == [False, True]


def test_schema_is_json_safe_python() -> None:
    schema = infer_input_schema(_mixed_frame())
    text = json.dumps(schema.model_dump(), allow_nan=False)
    assert InputSchema.model_validate_json(text) == schema
    for col in schema.columns:
        for value in col.categories or []:
            assert type(value) in (str, int, float, bool)


def test_max_categories_limit() -> None:
    frame = pd.DataFrame({"s": [f"v{i}" for i in range(20)]})
    assert infer_input_schema(frame, max_categories=20).columns[0].categories is not None
    assert infer_input_schema(frame, max_categories=19).columns[0].categories is None


def test_object_booleans_and_mixed_objects() -> None:
    frame = pd.DataFrame({"b": pd.Series([True, None, False], dtype=object), "m": [1, "a", None]})
    by = {c.name: c for c in infer_input_schema(frame).columns}
    assert by["b"].dtype == "boolean" and by["b"].nullable
    assert by["m"].dtype == "string"
    assert set(by["m"].categories or []) == {1, "a"}


def test_all_null_and_infinite_columns() -> None:
    frame = pd.DataFrame({"n": [np.nan, np.nan], "s": pd.Series([None, None], dtype=object), "i": [np.inf, 1.0]})
    by = {c.name: c for c in infer_input_schema(frame).columns}
    assert by["n"].nullable and by["n"].minimum is None and by["n"].maximum is None
    assert by["s"].categories == []
    assert (by["i"].minimum, by["i"].maximum) == (1.0, 1.0)


def test_column_lookup() -> None:
    schema = infer_input_schema(pd.DataFrame({"a": [1]}))
    assert schema.column("a") is not None
    assert schema.column("missing") is None


def test_non_string_column_names_become_strings() -> None:
    schema = infer_input_schema(pd.DataFrame({0: [1.0], 1: ["x"]}))
    assert schema.names == ["0", "1"]


def test_infer_output_schema_classifier_pipeline() -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    out = infer_output_schema(model, model.predict(x))
    assert out.task == "classification"
    assert out.dtype == "integer"
    assert out.classes == [0, 1, 2]
    assert all(type(c) is int for c in out.classes or [])
    assert out.has_probabilities is True


def test_infer_output_schema_string_labels_no_proba() -> None:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    y = pd.Series(["no", "no", "yes", "yes"])
    model = SVC().fit(x, y)
    out = infer_output_schema(model, model.predict(x))
    assert out.task == "classification"
    assert out.dtype == "string"
    assert out.classes == ["no", "yes"]
    assert out.has_probabilities is False


def test_infer_output_schema_regressor_and_other() -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = LinearRegression().fit(x, y)
    out = infer_output_schema(model, model.predict(x))
    assert out == OutputSchema(task="regression", dtype="float", classes=None, has_probabilities=False)

    class Custom:
        def predict(self, frame: pd.DataFrame) -> list[float]:
            return [0.0] * len(frame)

    other = infer_output_schema(Custom(), [0.5, 1.5])
    assert other.task == "other" and other.dtype == "float" and other.classes is None


def test_infer_output_schema_duck_typed_classifier() -> None:
    class Duck:
        classes_ = np.array([np.int64(0), np.int64(1)])

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            return np.zeros((len(frame), 2))

    out = infer_output_schema(Duck(), np.array([0, 1]))
    assert out.task == "classification" and out.classes == [0, 1] and out.has_probabilities


# ------------------------------------------------------------------------------ diffs


def _col(name: str, dtype: str = "float", **kw: object) -> ColumnSchema:
    return ColumnSchema(name=name, dtype=dtype, nullable=kw.pop("nullable", False), **kw)  # type: ignore[arg-type]


def _changes(old: list[ColumnSchema], new: list[ColumnSchema]) -> dict[tuple[str, str], bool]:
    diff = diff_input_schemas(InputSchema(columns=old), InputSchema(columns=new))
    return {(c.column, c.change): c.breaking for c in diff}


def test_identical_schemas_have_no_changes() -> None:
    schema = infer_input_schema(_mixed_frame())
    assert diff_input_schemas(schema, schema) == []


def test_removed_and_added_columns() -> None:
    changes = _changes(
        [_col("a"), _col("b")],
        [_col("a"), _col("c", nullable=True), _col("d")],
    )
    assert changes == {("b", "removed"): True, ("c", "added"): False, ("d", "added"): True}


def test_dtype_changes() -> None:
    assert _changes([_col("a", "integer")], [_col("a", "float")]) == {("a", "dtype"): False}
    assert _changes([_col("a", "float")], [_col("a", "integer")]) == {("a", "dtype"): True}
    assert _changes([_col("a", "string")], [_col("a", "category")]) == {("a", "dtype"): True}


def test_nullable_changes() -> None:
    assert _changes([_col("a")], [_col("a", nullable=True)]) == {("a", "nullable"): False}
    assert _changes([_col("a", nullable=True)], [_col("a")]) == {("a", "nullable"): True}


def test_category_changes() -> None:
    old = [_col("a", "string", categories=["x", "y"])]
    assert _changes(old, [_col("a", "string", categories=["y", "x", "z"])]) == {("a", "categories"): False}
    assert _changes(old, [_col("a", "string", categories=["x"])]) == {("a", "categories"): True}
    assert _changes(old, [_col("a", "string", categories=None)]) == {("a", "categories"): False}
    assert _changes([_col("a", "string")], old) == {("a", "categories"): True}
    assert _changes(old, [_col("a", "string", categories=["y", "x"])]) == {}


def test_range_changes_never_breaking() -> None:
    diff = diff_input_schemas(
        InputSchema(columns=[_col("a", minimum=0.0, maximum=1.0)]),
        InputSchema(columns=[_col("a", minimum=0.5, maximum=1.0)]),
    )
    assert len(diff) == 1
    assert diff[0].change == "range" and not diff[0].breaking
    assert diff[0].before == [0.0, 1.0] and diff[0].after == [0.5, 1.0]


def test_dtype_change_skips_category_and_range_noise() -> None:
    changes = _changes(
        [_col("a", "integer", minimum=0.0, maximum=3.0)],
        [_col("a", "string", categories=["x"])],
    )
    assert changes == {("a", "dtype"): True}


def _out(**kw: object) -> OutputSchema:
    base: dict[str, object] = {
        "task": "classification",
        "dtype": "integer",
        "classes": [0, 1],
        "has_probabilities": True,
    }
    base.update(kw)
    return OutputSchema.model_validate(base)


def test_output_diff() -> None:
    assert diff_output_schemas(_out(), _out()) == []
    [change] = diff_output_schemas(_out(), _out(classes=[0, 1, 2]))
    assert change.column == "<output>" and change.change == "categories" and change.breaking
    assert change.before == [0, 1] and change.after == [0, 1, 2]
    [change] = diff_output_schemas(_out(), _out(dtype="string"))
    assert (change.change, change.before, change.after, change.breaking) == (
        "dtype",
        "integer",
        "string",
        True,
    )
    task_changes = diff_output_schemas(
        _out(), _out(task="regression", dtype="float", classes=None, has_probabilities=False)
    )
    summary = [(c.change, c.before, c.after) for c in task_changes]
    assert ("dtype", "classification", "regression") in summary
    assert ("dtype", "integer", "float") in summary
    assert all(c.breaking for c in task_changes)


def test_output_probabilities_change() -> None:
    [lost] = diff_output_schemas(_out(), _out(has_probabilities=False))
    assert lost.change == "probabilities" and lost.breaking
    [gained] = diff_output_schemas(_out(has_probabilities=False), _out())
    assert not gained.breaking


@pytest.mark.parametrize("schema", [_out(), _out(classes=None, task="other")])
def test_output_schema_round_trips(schema: OutputSchema) -> None:
    assert OutputSchema.model_validate_json(schema.model_dump_json()) == schema


def test_duplicate_columns_rejected() -> None:
    from harbourmaster.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="duplicate column names: a"):
        infer_input_schema(pd.DataFrame([[1, 2]], columns=["a", "a"]))
