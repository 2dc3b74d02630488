"""Per-feature drift, method choice, settings and the dataset verdict (harbourmaster.core.drift)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from harbourmaster.core.drift import (
    DriftMethod,
    DriftSettings,
    FeatureDriftSettings,
    Reference,
    compute_drift,
    default_method,
    feature_drift,
)
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.profile import build_profile
from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.errors import InvalidInputError, ProjectFileError


def _reference(frame: pd.DataFrame, *, sample: bool = True) -> Reference:
    kinds = {name: ("numeric" if frame[name].dtype.kind in "fi" else "categorical") for name in frame.columns}
    return Reference(profile=build_profile(frame), kinds=kinds, sample=frame if sample else None)  # type: ignore[arg-type]


def test_default_methods_follow_evidently() -> None:
    assert default_method("numeric", 1000, 50) is DriftMethod.KS
    assert default_method("numeric", 1001, 50) is DriftMethod.WASSERSTEIN
    assert default_method("categorical", 1000, 3) is DriftMethod.CHISQUARE
    assert default_method("categorical", 1000, 2) is DriftMethod.Z
    assert default_method("categorical", 5000, 2) is DriftMethod.JENSENSHANNON
    assert default_method("numeric", 500, 5) is DriftMethod.CHISQUARE  # few values: categorical
    assert default_method("numeric", 5000, 4) is DriftMethod.JENSENSHANNON


def test_small_reference_uses_exact_tests_equal_to_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 800), "c": rng.choice(["a", "b", "c"], 800)})
    cur = pd.DataFrame({"x": rng.normal(0.3, 1, 500), "c": rng.choice(["a", "b", "c"], 500, p=[0.5, 0.3, 0.2])})
    reference = _reference(ref)
    x = feature_drift("x", "numeric", cur["x"], reference)
    assert x.method is DriftMethod.KS
    assert x.statistic == pytest.approx(stats.ks_2samp(ref["x"], cur["x"]).pvalue)
    assert x.drifted == (x.statistic <= 0.05)
    c = feature_drift("c", "categorical", cur["c"], reference)
    ref_counts = ref["c"].value_counts().sort_index()
    cur_counts = cur["c"].value_counts().sort_index()
    expected = stats.chisquare(cur_counts, ref_counts * len(cur) / len(ref)).pvalue
    assert c.method is DriftMethod.CHISQUARE and c.statistic == pytest.approx(expected)


def test_large_reference_uses_distances_equal_to_scipy() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(0, 2, 3000), "c": rng.choice(list("abcde"), 3000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 2, 1000), "c": rng.choice(list("abcdf"), 1000)})
    reference = _reference(ref)
    x = feature_drift("x", "numeric", cur["x"], reference)
    assert x.statistic == pytest.approx(stats.wasserstein_distance(ref["x"], cur["x"]) / np.std(ref["x"]))
    c = feature_drift("c", "categorical", cur["c"], reference)
    keys = sorted(set(ref["c"]) | set(cur["c"]))
    p = ref["c"].value_counts().reindex(keys, fill_value=0) / len(ref)
    q = cur["c"].value_counts().reindex(keys, fill_value=0) / len(cur)
    assert c.method is DriftMethod.JENSENSHANNON and c.statistic == pytest.approx(distance.jensenshannon(p, q))
    assert c.quality.unseen == pytest.approx((cur["c"] == "f").mean()) and c.quality.unseen_values == ["f"]


def test_nan_constant_and_empty_columns_have_defined_answers() -> None:
    ref = pd.DataFrame({"k": np.full(200, 7.0), "x": np.arange(200.0)})
    reference = _reference(ref)
    constant = feature_drift("k", "numeric", pd.Series([7.0] * 30), reference)
    assert constant.statistic is not None and not constant.drifted
    moved = feature_drift("k", "numeric", pd.Series([8.0] * 30), reference)
    assert moved.drifted and moved.quality.out_of_range == 1.0
    with_nan = feature_drift("x", "numeric", pd.Series([1.0, np.nan, np.inf, None, 5.0]), reference)
    assert with_nan.current_values == 2 and with_nan.quality.missing_current == pytest.approx(0.6)
    all_nan = feature_drift("x", "numeric", pd.Series([np.nan] * 4), reference)
    assert all_nan.statistic is None and "missing from every row" in (all_nan.note or "")
    empty = feature_drift("x", "numeric", pd.Series([], dtype=float), reference)
    assert empty.statistic is None and empty.note == "no rows in the window"
    text = feature_drift("x", "numeric", pd.Series(["oops", "12"]), reference)
    assert text.current_values == 1  # text that is no number counts as missing


def test_profile_only_reference_and_methods_that_need_rows() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(list("ab"), 2000)})
    reference = _reference(ref, sample=False)
    cur = pd.Series(rng.normal(1.0, 1, 500))
    binned = feature_drift("x", "numeric", cur, reference)
    assert binned.method is DriftMethod.JENSENSHANNON and binned.drifted and binned.reference == "profile"
    psi = feature_drift("x", "numeric", cur, reference, FeatureDriftSettings(method=DriftMethod.PSI))
    assert psi.method is DriftMethod.PSI and psi.statistic is not None and psi.statistic > 0.1
    ks = feature_drift("x", "numeric", cur, reference, FeatureDriftSettings(method=DriftMethod.KS))
    assert ks.statistic is None and "needs reference rows" in (ks.note or "")
    chi = feature_drift("c", "categorical", pd.Series(["a", "b", "z"] * 50), reference)
    assert chi.statistic is not None and chi.quality.unseen == pytest.approx(1 / 3)
    wrong = feature_drift("c", "categorical", pd.Series(["a"]), _reference(ref), FeatureDriftSettings(method="ks"))
    assert wrong.statistic is None and "numeric features only" in (wrong.note or "")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=40),
    st.sampled_from(list(DriftMethod)),
)
def test_any_numeric_window_gives_an_answer(values: list[float | None], method: DriftMethod) -> None:
    ref = pd.DataFrame({"x": np.linspace(-5, 5, 120), "c": ["a", "b", "c"] * 40})
    reference = _reference(ref)
    result = feature_drift(
        "x", "numeric", pd.Series(values, dtype="float64"), reference, FeatureDriftSettings(method=method)
    )
    assert result.statistic is None or np.isfinite(result.statistic)
    cats = feature_drift(
        "c", "categorical", pd.Series([None if v is None else str(v) for v in values], dtype=object), reference
    )
    assert cats.statistic is None or np.isfinite(cats.statistic)


def test_dataset_verdict_share_and_ranking() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({f"x{i}": rng.normal(0, 1, 2000) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": rng.normal(1.0 if i < 2 else 0.0, 1, 800) for i in range(4)})
    cur = cur.drop(columns=["x3"])  # a feature missing from the log: all missing
    features, _, share, drifted = compute_drift(cur, _reference(ref), DriftSettings())
    assert [f.feature for f in features[:2]] == sorted(
        ["x0", "x1"], key=lambda n: -next(f.score for f in features if f.feature == n)
    )
    assert share == pytest.approx(2 / 3) and drifted
    x3 = next(f for f in features if f.feature == "x3")
    assert x3.statistic is None and x3.quality.missing_current == 1.0
    _, _, _, strict = compute_drift(cur, _reference(ref), DriftSettings(drift_share=0.9))
    assert not strict


def test_settings_merge_and_validation() -> None:
    base = DriftSettings.model_validate({"threshold": 0.2, "features": {"a": {"method": "psi"}}})
    merged = base.merged({"features": {"a": {"threshold": 0.3}}, "drift_share": 0.4})
    assert merged.for_feature("a") == FeatureDriftSettings(method=DriftMethod.PSI, threshold=0.3)
    assert merged.for_feature("b") == FeatureDriftSettings(method=None, threshold=0.2)
    assert merged.drift_share == 0.4
    with pytest.raises(InvalidInputError, match="unknown drift method 'kolmogorov'"):
        DriftSettings.model_validate({"method": "kolmogorov"})


def test_project_file_monitoring_section() -> None:
    base = {"project": {"name": "p"}, "data": {"source": "d.csv", "target": "y"}, "pipeline": {"train": "t:f"}}
    spec = parse_project_spec(
        {**base, "monitoring": {"drift": {"sample_rows": 100, "features": {"a": {"method": "ks"}}}}}, "hm.toml"
    )
    assert spec.monitoring.drift_settings().sample_rows == 100
    with pytest.raises(ProjectFileError, match=r"\[monitoring\] drift.*unknown drift method 'kss'"):
        parse_project_spec({**base, "monitoring": {"drift": {"method": "kss"}}}, "hm.toml")
    with pytest.raises(ProjectFileError, match="not a window"):
        parse_project_spec({**base, "monitoring": {"drift": {"window": "weekly"}}}, "hm.toml")
    with pytest.raises(ProjectFileError, match="drift_share"):
        parse_project_spec({**base, "monitoring": {"drift": {"drift_share": 2}}}, "hm.toml")


def test_windows() -> None:
    assert parse_window("5000").last_rows == 5000
    assert parse_window("5000rows").text == "5000rows"
    day = parse_window("1d")
    assert day.start is not None and day.end is None
    span = parse_window("2026-01-01..2026-01-02T12:00")
    assert span.start is not None and span.end is not None and span.start.tzinfo is not None
    for bad in ("0", "soon", "2026-01-02..2026-01-01", "x..y"):
        with pytest.raises(InvalidInputError):
            parse_window(bad)
