"""Every drift statistic against scipy's (or numpy's) on the same data, plus the degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.spatial import distance

from harbourmaster.core import drift_stats

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = arrays(np.float64, st.integers(min_value=1, max_value=60), elements=finite)
counts = st.lists(st.integers(min_value=0, max_value=500), min_size=2, max_size=8)


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_wasserstein_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    expected = stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001)
    assert drift_stats.wasserstein_normed(reference, current) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_ks_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    assert drift_stats.ks_pvalue(reference, current) == pytest.approx(stats.ks_2samp(reference, current).pvalue)


@settings(max_examples=60, deadline=None)
@given(counts, st.data())
def test_chisquare_matches_scipy(reference: list[int], data: st.DataObject) -> None:
    current = data.draw(st.lists(st.integers(0, 500), min_size=len(reference), max_size=len(reference)))
    ref, cur = np.array(reference, float), np.array(current, float)
    ours = drift_stats.chisquare_pvalue(ref, cur)
    if ref.sum() == 0 or cur.sum() == 0:
        assert ours == 1.0
    elif np.any((ref == 0) & (cur > 0)):
        assert ours == 0.0  # a category the reference never saw
    else:
        keep = ref > 0
        if keep.sum() < 2:
            assert ours == 1.0
        else:
            expected = stats.chisquare(cur[keep], ref[keep] * cur.sum() / ref.sum()).pvalue
            assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_z_test_matches_normal_formula(a: int, b: int, c: int, d: int) -> None:
    ours = drift_stats.z_pvalue(np.array([a, b]), np.array([c, d]))
    n1, n2 = a + b, c + d
    if n1 == 0 or n2 == 0:
        assert ours == 1.0
        return
    pooled = (a + c) / (n1 + n2)
    if pooled in (0.0, 1.0):
        assert ours == 1.0
        return
    z = (a / n1 - c / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert ours == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(counts, st.data())
def test_jensenshannon_matches_scipy(reference: list[int], data: st.DataObject) -> None:
    current = data.draw(st.lists(st.integers(0, 500), min_size=len(reference), max_size=len(reference)))
    ref, cur = np.array(reference, float), np.array(current, float)
    ours = drift_stats.jensenshannon_distance(ref, cur)
    if ref.sum() == 0 or cur.sum() == 0:
        assert ours == 0.0
    else:
        assert ours == pytest.approx(distance.jensenshannon(ref, cur), abs=1e-7)


def test_psi_fills_empty_bins_like_evidently() -> None:
    ref = np.array([0.5, 0.5, 0.0])
    cur = np.array([0.2, 0.3, 0.5])
    filled = np.array([0.5, 0.5, 0.0001])
    expected = float(np.sum((filled - cur) * np.log(filled / cur)))
    assert drift_stats.psi(ref, cur) == pytest.approx(expected)
    tiny = drift_stats.fill_empty(np.array([0.00005, 0.99995, 0.0]))
    assert tiny[2] == pytest.approx(0.00005 / 10**6)
    assert drift_stats.psi(np.zeros(3), cur) == 0.0
    # PSI is a symmetrised Kullback-Leibler divergence: scipy's entropy both ways.
    a, b = np.array([0.1, 0.4, 0.5]), np.array([0.3, 0.3, 0.4])
    assert drift_stats.psi(a, b) == pytest.approx(stats.entropy(a, b) + stats.entropy(b, a))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(25, 200), elements=finite), samples)
def test_sturges_edges_match_numpy(reference: np.ndarray, current: np.ndarray) -> None:
    combined = np.concatenate([reference, current])
    expected = np.histogram_bin_edges(combined, bins="sturges")
    assert drift_stats.sturges_edges(reference, current) == pytest.approx(expected)


def test_binned_fractions_per_value_for_few_distinct_values() -> None:
    ref = np.array([1.0, 1.0, 2.0, 3.0])
    cur = np.array([2.0, 4.0])
    ref_f, cur_f = drift_stats.binned_fractions(ref, cur)
    assert ref_f.tolist() == [0.5, 0.25, 0.25, 0.0]
    assert cur_f.tolist() == [0.0, 0.5, 0.0, 0.5]


def test_degenerate_inputs_have_defined_answers() -> None:
    empty = np.array([], dtype=float)
    constant = np.full(50, 3.0)
    assert drift_stats.ks_pvalue(empty, constant) == 1.0
    assert drift_stats.wasserstein_normed(empty, constant) == 0.0
    assert drift_stats.wasserstein_normed(constant, constant) == 0.0
    # A constant reference: the distance is normalised by the floor 0.001, so any move is drift.
    assert drift_stats.wasserstein_normed(constant, constant + 0.01) == pytest.approx(10.0)
    ref_f, cur_f = drift_stats.binned_fractions(constant, constant)
    assert drift_stats.jensenshannon_distance(ref_f, cur_f) == 0.0
    assert drift_stats.chisquare_pvalue(np.array([10.0, 0.0]), np.array([5.0, 5.0])) == 0.0
    assert drift_stats.chisquare_pvalue(np.array([10.0]), np.array([4.0])) == 1.0
    assert drift_stats.z_pvalue(np.array([10.0, 0.0]), np.array([4.0, 0.0])) == 1.0
