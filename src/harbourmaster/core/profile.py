"""Reference profile of training data: the baseline that data drift is measured against.

The profile stays small however wide or long the data: per feature, a handful of
summary numbers plus either a histogram (numeric) or the top categories' frequencies
(categorical). All floats are finite; undefined statistics are ``None``.

Numeric histograms use edges taken from training quantiles (deduplicated). The
outer edges are the training minimum and maximum; new values below the minimum
fall into the first bin and values above the maximum into the last, so every
non-null value lands in some bin. Bin ``i`` is ``[edges[i], edges[i+1])``, the
last bin is closed on both sides. When a column has no more distinct values than
``bins``, each distinct value gets its own bin (edges at midpoints), so low
cardinality numeric data (counts, flags) keeps its shape. A constant column has
the single bin ``[c, c]``.

A column named sensitive is profiled without its values: only ``count`` and
``null_fraction`` (no quantiles, range, histogram or categories), marked
``sensitive``. ``synthetic_row`` builds the row a version warms up on from the
profile (medians, most frequent categories), so no training record is stored.

Categorical fractions (and numeric bin fractions) are fractions of the non-null
values; nulls are tracked separately in ``null_fraction``. Infinite numeric
values count as nulls. Datetime and timedelta columns are profiled as numbers
(seconds since the epoch / seconds); so are dates written as ISO 8601 text when
compared with a profile (``bin_fractions_for``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from harbourmaster.core.timestamps import epoch_seconds
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "OTHER_KEY",
    "QUANTILES",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "ReferenceProfile",
    "bin_fractions_for",
    "build_profile",
    "category_fractions_for",
    "is_numeric_feature",
    "synthetic_row",
]

OTHER_KEY = "__other__"
QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}


class NumericProfile(BaseModel):
    """Summary and histogram of a numeric feature (see module docs for binning)."""

    kind: Literal["numeric"] = "numeric"
    count: int = Field(description="Non-null values seen.")
    null_fraction: float
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = Field(default=None, description="Population standard deviation.")
    quantiles: dict[str, float] = Field(default_factory=dict)
    bin_edges: list[float] = Field(default_factory=list)
    bin_fractions: list[float] = Field(default_factory=list)
    sensitive: bool = Field(default=False, description="Values withheld: only count and null fraction.")


class CategoricalProfile(BaseModel):
    """Frequencies of the most common values of a categorical feature (keys as str)."""

    kind: Literal["categorical"] = "categorical"
    count: int = Field(description="Non-null values seen.")
    null_fraction: float
    frequencies: dict[str, float] = Field(default_factory=dict)
    other_fraction: float = 0.0
    distinct: int = 0
    sensitive: bool = Field(default=False, description="Values withheld: only count and null fraction.")


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class ReferenceProfile(BaseModel):
    """Profiles of every feature of a training frame."""

    rows: int
    features: dict[str, FeatureProfile]


# --------------------------------------------------------------------------- helpers


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def is_numeric_feature(values: pd.Series) -> bool:
    """True if ``values`` is profiled as numeric (not boolean, object or category)."""
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return False
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
    )


def _as_float_array(values: pd.Series) -> np.ndarray:
    """Non-null, finite values of a numeric/datetime series as float64."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dtype, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        values = values.dropna()
        numbers = (values - pd.Timestamp(0)).dt.total_seconds()
    elif pd.api.types.is_timedelta64_dtype(values.dtype):
        numbers = values.dropna().dt.total_seconds()
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    return array[np.isfinite(array)]


def _stringify(values: pd.Series) -> pd.Series:
    """Non-null values as strings (the keys used in categorical profiles)."""
    import pandas as pd

    values = values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values
    return values.dropna().map(str).astype(object)


def _bin_edges(array: np.ndarray, bins: int) -> list[float]:
    import numpy as np

    distinct = np.unique(array)
    if distinct.size == 1:
        return [float(distinct[0]), float(distinct[0])]
    if distinct.size <= bins:
        mids = (distinct[:-1] + distinct[1:]) / 2.0
        return [float(distinct[0]), *(float(m) for m in mids), float(distinct[-1])]
    edges = np.unique(np.quantile(array, np.linspace(0.0, 1.0, bins + 1)))
    return [float(e) for e in edges]


def _bin_counts(array: np.ndarray, edges: list[float]) -> np.ndarray:
    """Count values per bin; out-of-range values go to the first or last bin."""
    import numpy as np

    n_bins = len(edges) - 1
    if n_bins <= 0:
        return np.zeros(0, dtype="int64")
    inner = np.asarray(edges[1:-1], dtype="float64")
    index = np.searchsorted(inner, array, side="right")
    return np.bincount(index, minlength=n_bins)[:n_bins]


def _fractions(counts: np.ndarray) -> list[float]:
    total = int(counts.sum())
    if total == 0:
        return [0.0] * len(counts)
    return [float(c) / total for c in counts]


def _numeric_profile(values: pd.Series, bins: int) -> NumericProfile:
    import numpy as np

    rows = len(values)
    array = _as_float_array(values)
    count = int(array.size)
    null_fraction = (rows - count) / rows if rows else 0.0
    if count == 0:
        return NumericProfile(count=0, null_fraction=null_fraction)
    quantiles = np.quantile(array, list(QUANTILES.values()))
    edges = _bin_edges(array, bins)
    return NumericProfile(
        count=count,
        null_fraction=null_fraction,
        minimum=_finite(array.min()),
        maximum=_finite(array.max()),
        mean=_finite(array.mean()),
        std=_finite(array.std()),
        quantiles={key: float(q) for key, q in zip(QUANTILES, quantiles, strict=True) if math.isfinite(q)},
        bin_edges=edges,
        bin_fractions=_fractions(_bin_counts(array, edges)),
    )


def _categorical_profile(values: pd.Series, max_categories: int) -> CategoricalProfile:
    rows = len(values)
    strings = _stringify(values)
    count = len(strings)
    null_fraction = (rows - count) / rows if rows else 0.0
    if count == 0:
        return CategoricalProfile(count=0, null_fraction=null_fraction)
    counts = strings.value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    top = ordered[:max_categories]
    frequencies = {str(key): int(n) / count for key, n in top}
    kept = sum(int(n) for _, n in top)
    return CategoricalProfile(
        count=count,
        null_fraction=null_fraction,
        frequencies=frequencies,
        other_fraction=(count - kept) / count,
        distinct=len(counts),
    )


# ----------------------------------------------------------------------------- public


def _sensitive_profile(values: pd.Series) -> NumericProfile | CategoricalProfile:
    rows = len(values)
    if is_numeric_feature(values):
        count = int(_as_float_array(values).size)
        return NumericProfile(count=count, null_fraction=(rows - count) / rows if rows else 0.0, sensitive=True)
    count = len(_stringify(values))
    # Every value counts as "other": drift on the column is measured against nothing it could reveal.
    return CategoricalProfile(
        count=count, null_fraction=(rows - count) / rows if rows else 0.0, other_fraction=1.0, sensitive=True
    )


def build_profile(
    frame: pd.DataFrame, bins: int = 10, max_categories: int = 50, sensitive: Iterable[str] = ()
) -> ReferenceProfile:
    """Profile every column of ``frame``: numeric histograms or top-category frequencies.

    Columns named in ``sensitive`` get counts and null fractions only (see the module docs).

    Booleans, strings/objects and pandas categoricals are categorical; numbers,
    datetimes and timedeltas are numeric. Raises ``InvalidInputError`` for an
    empty frame or invalid ``bins``/``max_categories``.
    """
    if bins < 1:
        raise InvalidInputError(f"cannot profile with bins={bins}", "use at least 1 bin (the default is 10)")
    if max_categories < 0:
        raise InvalidInputError(
            f"cannot profile with max_categories={max_categories}",
            "use 0 or more categories (the default is 50)",
        )
    if frame.shape[1] == 0:
        raise InvalidInputError("cannot profile a frame with no columns", "pass the training features as columns")
    if frame.shape[0] == 0:
        raise InvalidInputError(
            "cannot profile an empty frame (0 rows)",
            "check the training data source and any filter that dropped every row",
        )
    if frame.columns.duplicated().any():
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise InvalidInputError(
            f"cannot profile a frame with duplicate column names: {', '.join(dupes)}",
            "rename or drop the duplicate columns",
        )
    withheld = {str(name) for name in sensitive}
    unknown = sorted(withheld - {str(c) for c in frame.columns})
    if unknown:
        raise InvalidInputError(
            f"sensitive column(s) not in the training data: {', '.join(unknown)}",
            "name feature columns of the training data (the target cannot be withheld)",
        )
    features: dict[str, NumericProfile | CategoricalProfile] = {}
    for name in frame.columns:
        values = frame[name]
        if str(name) in withheld:
            features[str(name)] = _sensitive_profile(values)
        elif is_numeric_feature(values):
            features[str(name)] = _numeric_profile(values, bins)
        else:
            features[str(name)] = _categorical_profile(values, max_categories)
    return ReferenceProfile(rows=len(frame), features=features)


def synthetic_row(profile: ReferenceProfile, dtypes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A made-up record built from the profile: the median of each numeric feature, the most frequent
    category of each categorical one, ``None`` for a sensitive or all-null feature. It is what a version
    warms up on; no training record is kept. ``dtypes`` (column -> pandas dtype) gives integer, boolean
    and datetime columns values of their own type."""
    import pandas as pd

    dtypes = dtypes or {}
    row: dict[str, Any] = {}
    for name, feature in profile.features.items():
        dtype = dtypes.get(name)
        if feature.sensitive or feature.count == 0:
            row[name] = None
        elif isinstance(feature, NumericProfile):
            median = feature.quantiles.get("p50", feature.mean)
            row[name] = _typed_number(median, dtype)
        else:
            top = max(feature.frequencies.items(), key=lambda item: item[1], default=(None, 0.0))[0]
            row[name] = (top == "True") if dtype is not None and pd.api.types.is_bool_dtype(dtype) else top
    return row


def _typed_number(value: float | None, dtype: Any) -> Any:
    import pandas as pd

    if value is None or dtype is None:
        return value
    if pd.api.types.is_bool_dtype(dtype):
        return bool(round(value))
    if pd.api.types.is_integer_dtype(dtype):
        return round(value)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.Timestamp(value, unit="s").isoformat()
    if pd.api.types.is_timedelta64_dtype(dtype):
        return pd.Timedelta(seconds=value).isoformat()
    return float(value)


def bin_fractions_for(values: pd.Series, profile: NumericProfile) -> list[float]:
    """Fractions of the non-null values of ``values`` in each bin of ``profile``.

    Values outside the training range fall into the first/last bin. Returns zeros
    when there is no non-null value, and ``[]`` when the profile has no bins
    (an all-null training column).
    """
    import pandas as pd

    n_bins = len(profile.bin_edges) - 1
    if n_bins <= 0:
        return []
    if is_numeric_feature(values):
        array = _as_float_array(values)
    else:
        array = _as_float_array(pd.to_numeric(values, errors="coerce"))
        if array.size == 0:  # dates sent as text: seconds since the epoch, as the profile holds them
            array = epoch_seconds(values)
    return _fractions(_bin_counts(array, profile.bin_edges))


def category_fractions_for(values: pd.Series, profile: CategoricalProfile) -> dict[str, float]:
    """Fractions of the non-null values of ``values`` per category of ``profile``.

    Keys are the profile's categories plus ``"__other__"`` for anything else
    (unseen values and training categories outside the top ``max_categories``,
    comparable with ``profile.other_fraction``). All zeros if there is no value.
    """
    strings = _stringify(values)
    total = len(strings)
    result = dict.fromkeys(profile.frequencies, 0.0)
    result[OTHER_KEY] = 0.0
    if total == 0:
        return result
    other = 0
    for key, n in strings.value_counts().items():
        if key in profile.frequencies:
            result[str(key)] = int(n) / total
        else:
            other += int(n)
    result[OTHER_KEY] = other / total
    return result
