"""Two-sample drift statistics on numpy arrays: the tests Evidently chooses by default, and PSI.

Every function takes the reference and the current values already cleaned (finite
numbers, or category counts aligned on the same keys) and returns one float. Each
gives a defined answer on degenerate input (an empty side, a constant column, a
category only one side has) instead of raising; the callers decide what an
empty side means before calling. ``tests/core/test_core_drift_stats.py`` checks
every statistic against scipy's on the same data.

Conventions (Evidently's, so that verdicts agree):

- ``ks``: two-sample Kolmogorov-Smirnov p-value (scipy's ``ks_2samp``, two-sided).
- ``chisquare``: Pearson's chi-square p-value of the current counts against the
  reference proportions scaled to the current total.
- ``z``: two-proportion z-test p-value (binary features).
- ``wasserstein``: the 1-D Wasserstein distance divided by the reference's population
  standard deviation (at least 0.001).
- ``jensenshannon``: the Jensen-Shannon distance (natural logarithm) of binned fractions.
- ``psi``: the population stability index of binned fractions, empty bins filled with
  a small fraction (0.0001, or a millionth of the smallest non-empty bin when that is smaller).

Numeric values are binned for ``jensenshannon`` and ``psi`` like Evidently does: a
reference with more than 20 distinct values gets Sturges' number of equal-width bins
over the range of both samples; fewer distinct values are treated as categories.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MIN_STD",
    "binned_fractions",
    "category_fractions",
    "chisquare_pvalue",
    "fill_empty",
    "jensenshannon_distance",
    "ks_pvalue",
    "psi",
    "sturges_edges",
    "wasserstein_normed",
    "z_pvalue",
]

MIN_STD = 0.001  # Evidently's floor for the normalising standard deviation
VALUE_BINS_UP_TO = 20  # a numeric reference with at most this many distinct values is binned per value


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sided two-sample KS p-value; 1.0 when either side is empty."""
    from scipy import stats

    if reference.size == 0 or current.size == 0:
        return 1.0
    with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp": scipy's choice
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ks_2samp(reference, current).pvalue)


def wasserstein_normed(reference: np.ndarray, current: np.ndarray, reference_std: float | None = None) -> float:
    """Wasserstein distance between the two empirical distributions over ``max(std(reference), 0.001)``.

    The area between the two empirical CDFs (equally, between the quantile functions); 0.0 when either
    side is empty.
    """
    import numpy as np

    if reference.size == 0 or current.size == 0:
        return 0.0
    std = float(np.std(reference)) if reference_std is None else reference_std
    # W1 is also the area between the two quantile functions: sort each sample, merge the two grids of
    # quantile levels (i/n and j/m: two sorted runs, a linear merge) and, on each piece between adjacent
    # levels, take the gap between the two samples' values at that piece's midpoint.
    u = np.sort(reference)
    v = np.sort(current)
    levels = np.concatenate([np.arange(1, u.size + 1) / u.size, np.arange(1, v.size + 1) / v.size])
    levels.sort(kind="stable")
    widths = np.diff(levels, prepend=0.0)
    middle = levels - widths / 2.0
    # (A zero-width piece, where both grids share a level, may index one past the end: clip; it adds 0.)
    at_u = np.minimum((middle * u.size).astype(np.int64), u.size - 1)
    at_v = np.minimum((middle * v.size).astype(np.int64), v.size - 1)
    gaps = np.abs(u[at_u] - v[at_v])
    return float(np.dot(widths, gaps)) / max(std, MIN_STD)


def chisquare_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Chi-square p-value of current counts against reference proportions (aligned category counts).

    A category the reference never saw but the current data has is infinitely unlikely under the
    reference: p = 0.0. One category in all (nothing to compare) or an empty side: p = 1.0.
    """
    import numpy as np
    from scipy import stats

    ref = np.asarray(reference_counts, dtype="float64")
    cur = np.asarray(current_counts, dtype="float64")
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref == 0 or n_cur == 0:
        return 1.0
    expected = ref * (n_cur / n_ref)
    if np.any((expected == 0) & (cur > 0)):
        return 0.0
    keep = expected > 0
    if keep.sum() < 2:
        return 1.0
    statistic = float(np.sum((cur[keep] - expected[keep]) ** 2 / expected[keep]))
    return float(stats.chi2.sf(statistic, int(keep.sum()) - 1))


def z_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Two-sided two-proportion z-test p-value on the first of two aligned categories' counts.

    1.0 when either side is empty or both sides hold one and the same value (no variance).
    """
    import numpy as np
    from scipy import stats

    ref = np.asarray(reference_counts, dtype="float64")
    cur = np.asarray(current_counts, dtype="float64")
    n1, n2 = ref.sum(), cur.sum()
    if n1 == 0 or n2 == 0:
        return 1.0
    p1, p2 = ref[0] / n1, cur[0] / n2
    pooled = (ref[0] + cur[0]) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 1.0
    z = (p1 - p2) / math.sqrt(variance)
    return float(2 * stats.norm.sf(abs(z)))


def jensenshannon_distance(reference_fractions: np.ndarray, current_fractions: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of two aligned fraction vectors; 0.0 if either is all zero."""
    import numpy as np

    p = np.asarray(reference_fractions, dtype="float64")
    q = np.asarray(current_fractions, dtype="float64")
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    divergence = (_kl(p, m) + _kl(q, m)) / 2.0
    return float(math.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    import numpy as np

    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / m[mask])))


def fill_empty(fractions: np.ndarray) -> np.ndarray:
    """Empty bins get 0.0001, or a millionth of the smallest non-empty bin when that is 0.0001 or less."""
    import numpy as np

    filled = np.asarray(fractions, dtype="float64").copy()
    nonzero = filled[filled != 0]
    if nonzero.size == 0:
        return filled
    smallest = float(nonzero.min())
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled


def psi(reference_fractions: np.ndarray, current_fractions: np.ndarray) -> float:
    """Population stability index, empty bins filled (see ``fill_empty``); 0.0 if either side is empty."""
    import numpy as np

    ref = np.asarray(reference_fractions, dtype="float64")
    cur = np.asarray(current_fractions, dtype="float64")
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 0.0
    ref, cur = fill_empty(ref), fill_empty(cur)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def sturges_edges(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Equal-width bin edges over both samples' range, Sturges' count (numpy's ``bins="sturges"``)."""
    import numpy as np

    size = reference.size + current.size
    low = float(min(reference.min(), current.min()))
    high = float(max(reference.max(), current.max()))
    if high == low:
        return np.array([low - 0.5, high + 0.5])
    bins = math.ceil((high - low) / ((high - low) / (math.log2(size) + 1.0)))
    return np.linspace(low, high, bins + 1)


def binned_fractions(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of both numeric samples per bin (Sturges' bins, or one bin per value; see module docs)."""
    import numpy as np

    if reference.size == 0 or current.size == 0:
        return np.zeros(1), np.zeros(1)
    ref_values = np.unique(reference)
    if ref_values.size > VALUE_BINS_UP_TO:
        edges = sturges_edges(reference, current)
        ref_counts = np.histogram(reference, edges)[0]
        cur_counts = np.histogram(current, edges)[0]
        return ref_counts / reference.size, cur_counts / current.size
    keys = np.union1d(ref_values, np.unique(current))
    ref_counts = _value_counts(reference, keys)
    cur_counts = _value_counts(current, keys)
    return ref_counts / reference.size, cur_counts / current.size


def _value_counts(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.bincount(np.searchsorted(keys, values), minlength=keys.size)


def category_fractions(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned category counts as fractions of each side's total (zeros for an empty side)."""
    import numpy as np

    ref = np.asarray(reference_counts, dtype="float64")
    cur = np.asarray(current_counts, dtype="float64")
    return (ref / ref.sum() if ref.sum() else ref), (cur / cur.sum() if cur.sum() else cur)
