"""Tests for harbourmaster.core.profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter
from sklearn.datasets import load_breast_cancer

from harbourmaster.core.profile import (
    OTHER_KEY,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
    bin_fractions_for,
    build_profile,
    category_fractions_for,
)
from harbourmaster.errors import InvalidInputError


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 500
    return pd.DataFrame(
        {
            "x": rng.normal(10, 2, n),
            "k": rng.integers(0, 3, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
            "b": rng.random(n) > 0.5,
            "cat": pd.Categorical(rng.choice(["u", "v"], n)),
            "const": np.full(n, 7.0),
            "empty": np.full(n, np.nan),
            "nulls": np.where(rng.random(n) > 0.8, np.nan, rng.random(n)),
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
        }
    )


def _dump(profile: ReferenceProfile) -> str:
    return json.dumps(profile.model_dump(), allow_nan=False)


def test_kinds_and_json_round_trip() -> None:
    profile = build_profile(_frame())
    assert profile.rows == 500
    kinds = {name: p.kind for name, p in profile.features.items()}
    assert kinds == {
        "x": "numeric",
        "k": "numeric",
        "c": "categorical",
        "b": "categorical",
        "cat": "categorical",
        "const": "numeric",
        "empty": "numeric",
        "nulls": "numeric",
        "when": "numeric",
    }
    text = _dump(profile)
    assert ReferenceProfile.model_validate_json(text) == profile


def test_numeric_profile_statistics() -> None:
    p = build_profile(_frame(), bins=10).features["x"]
    assert isinstance(p, NumericProfile)
    assert p.count == 500 and p.null_fraction == 0.0
    assert list(p.quantiles) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert p.minimum == p.bin_edges[0] and p.maximum == p.bin_edges[-1]
    assert p.mean == pytest.approx(10, abs=0.5)
    assert p.std == pytest.approx(2, abs=0.3)
    assert len(p.bin_edges) == 11
    assert len(p.bin_fractions) == 10
    assert sum(p.bin_fractions) == pytest.approx(1.0)
    assert all(f == pytest.approx(0.1, abs=0.01) for f in p.bin_fractions)
    assert p.bin_edges == sorted(p.bin_edges)


def test_low_cardinality_numeric_gets_one_bin_per_value() -> None:
    p = build_profile(pd.DataFrame({"k": [0, 0, 1, 2, 2, 2]})).features["k"]
    assert isinstance(p, NumericProfile)
    assert p.bin_edges == [0.0, 0.5, 1.5, 2.0]
    assert p.bin_fractions == pytest.approx([2 / 6, 1 / 6, 3 / 6])


def test_constant_column_single_bin() -> None:
    p = build_profile(_frame()).features["const"]
    assert isinstance(p, NumericProfile)
    assert p.bin_edges == [7.0, 7.0] and p.bin_fractions == [1.0]
    assert p.std == 0.0
    assert bin_fractions_for(pd.Series([1.0, 7.0, 100.0]), p) == [1.0]


def test_all_null_numeric_column() -> None:
    p = build_profile(_frame()).features["empty"]
    assert isinstance(p, NumericProfile)
    assert p.count == 0 and p.null_fraction == 1.0
    assert p.minimum is None and p.mean is None and p.std is None
    assert p.quantiles == {} and p.bin_edges == [] and p.bin_fractions == []
    assert bin_fractions_for(pd.Series([1.0, 2.0]), p) == []


def test_null_fraction_and_infinite_values() -> None:
    frame = pd.DataFrame({"v": [1.0, np.nan, np.inf, -np.inf, 2.0]})
    p = build_profile(frame).features["v"]
    assert isinstance(p, NumericProfile)
    assert p.count == 2 and p.null_fraction == pytest.approx(0.6)
    assert (p.minimum, p.maximum) == (1.0, 2.0)
    _dump(build_profile(frame))


def test_all_null_object_column_is_categorical() -> None:
    frame = pd.DataFrame({"s": pd.Series([None, None], dtype=object)})
    p = build_profile(frame).features["s"]
    assert isinstance(p, CategoricalProfile)
    assert p.count == 0 and p.null_fraction == 1.0 and p.frequencies == {} and p.distinct == 0
    assert category_fractions_for(pd.Series(["a"]), p) == {OTHER_KEY: 1.0}


def test_categorical_profile_frequencies() -> None:
    p = build_profile(_frame()).features["c"]
    assert isinstance(p, CategoricalProfile)
    assert list(p.frequencies) == ["a", "b", "c"]  # most frequent first
    assert sum(p.frequencies.values()) + p.other_fraction == pytest.approx(1.0)
    assert p.other_fraction == 0.0 and p.distinct == 3


def test_boolean_keys_are_strings() -> None:
    p = build_profile(_frame()).features["b"]
    assert isinstance(p, CategoricalProfile)
    assert set(p.frequencies) == {"True", "False"}


def test_max_categories_keeps_top_and_other() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 1 + [None] * 2
    p = build_profile(pd.DataFrame({"s": values}), max_categories=2).features["s"]
    assert isinstance(p, CategoricalProfile)
    assert p.frequencies == {"a": 0.5, "b": 0.3}
    assert p.other_fraction == pytest.approx(0.2)
    assert p.distinct == 4 and p.count == 10
    assert p.null_fraction == pytest.approx(2 / 12)


def test_numeric_categories_are_stringified_and_merged() -> None:
    p = build_profile(pd.DataFrame({"s": pd.Series([1, "1", 2.5], dtype=object)})).features["s"]
    assert isinstance(p, CategoricalProfile)
    assert p.frequencies == pytest.approx({"1": 2 / 3, "2.5": 1 / 3})


def test_bin_fractions_for_new_data() -> None:
    profile = build_profile(_frame())
    p = profile.features["x"]
    assert isinstance(p, NumericProfile)
    same = bin_fractions_for(_frame()["x"], p)
    assert same == pytest.approx(p.bin_fractions)
    shifted = bin_fractions_for(pd.Series([-1000.0, 1000.0, 1000.0, np.nan]), p)
    assert shifted[0] == pytest.approx(1 / 3) and shifted[-1] == pytest.approx(2 / 3)
    assert sum(shifted) == pytest.approx(1.0)
    assert bin_fractions_for(pd.Series([np.nan, None], dtype=float), p) == [0.0] * 10
    assert sum(bin_fractions_for(pd.Series(["10.5", "x"]), p)) == pytest.approx(1.0)


def test_bin_fractions_for_datetimes() -> None:
    p = build_profile(_frame()).features["when"]
    assert isinstance(p, NumericProfile)
    later = pd.Series(pd.date_range("2030-01-01", periods=5, freq="D"))
    assert bin_fractions_for(later, p)[-1] == 1.0
    assert bin_fractions_for(_frame()["when"], p) == pytest.approx(p.bin_fractions)


def test_category_fractions_for_new_data() -> None:
    p = build_profile(_frame()).features["c"]
    assert isinstance(p, CategoricalProfile)
    fractions = category_fractions_for(pd.Series(["a", "a", "z", None, "b"]), p)
    assert fractions == {"a": 0.5, "b": 0.25, "c": 0.0, OTHER_KEY: 0.25}
    assert category_fractions_for(pd.Series([], dtype=object), p) == {
        "a": 0.0,
        "b": 0.0,
        "c": 0.0,
        OTHER_KEY: 0.0,
    }
    cat = build_profile(_frame()).features["cat"]
    assert isinstance(cat, CategoricalProfile)
    new = category_fractions_for(pd.Series(pd.Categorical(["u", "u", "v", "w"])), cat)
    assert new == {"u": 0.5, "v": 0.25, OTHER_KEY: 0.25}


def test_feature_profile_discriminator() -> None:
    adapter = TypeAdapter(FeatureProfile)
    parsed = adapter.validate_python({"kind": "categorical", "count": 1, "null_fraction": 0.0})
    assert isinstance(parsed, CategoricalProfile)
    parsed = adapter.validate_python({"kind": "numeric", "count": 1, "null_fraction": 0.0})
    assert isinstance(parsed, NumericProfile)


def test_wide_real_data_is_small_and_json_safe() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    profile = build_profile(frame)
    assert len(profile.features) == frame.shape[1]
    assert len(_dump(profile)) < 100_000
    for p in profile.features.values():
        assert isinstance(p, NumericProfile)
        assert sum(p.bin_fractions) == pytest.approx(1.0)


def test_empty_frame_errors() -> None:
    with pytest.raises(InvalidInputError) as rows:
        build_profile(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert "empty frame" in rows.value.message and rows.value.hint
    with pytest.raises(InvalidInputError) as cols:
        build_profile(pd.DataFrame())
    assert "no columns" in cols.value.message


def test_bad_arguments_and_duplicate_columns() -> None:
    with pytest.raises(InvalidInputError, match="bins=0"):
        build_profile(pd.DataFrame({"a": [1]}), bins=0)
    with pytest.raises(InvalidInputError, match="max_categories"):
        build_profile(pd.DataFrame({"a": [1]}), max_categories=-1)
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(InvalidInputError, match="duplicate column names: a"):
        build_profile(dup)
