"""Data drift of a window of production data against a version's reference: per feature, and a verdict.

Pure logic: the service reads the window and the reference, this module decides.

The test of each feature follows Evidently's defaults (``default_method``): with a
reference of at most 1000 rows, KS for numeric features and chi-square for
categorical ones (a z-test when there are only two values); with a larger
reference, the Wasserstein distance normalised by the reference's standard
deviation for numeric features and the Jensen-Shannon distance for categorical
ones. A numeric feature with at most 5 distinct values is tested as categorical.
Thresholds: 0.05 for p-values (drift when p is below), 0.1 for distances (drift
when the distance is at or above). PSI is available by configuration. Any feature's
method and threshold can be set (``DriftSettings``).

The reference is a bounded sample of the training rows stored in the bundle (exact
tests), or, for a version registered before samples existed, the histogram profile:
then only the binned tests run (``jensenshannon``, ``psi``, ``chisquare``, ``z``) and
a default KS/Wasserstein becomes Jensen-Shannon over the profile's bins.

Every feature also gets data-quality figures against the reference: missing rates,
the share of values outside the training range, and the share of unseen categories.
The dataset drifts when at least ``drift_share`` of the measured features drift.
Features are ranked by ``score``: the statistic relative to its threshold (1.0 at
the threshold, higher is more drift), so p-values and distances rank together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harbourmaster.core import drift_stats
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.profile import (
    OTHER_KEY,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    bin_fractions_for,
    category_fractions_for,
)
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "PREDICTION",
    "DataQuality",
    "DriftMethod",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "FeatureDriftSettings",
    "Reference",
    "compute_drift",
    "default_method",
    "feature_drift",
]

PREDICTION = "__prediction__"  # the name of the model's output in a report and in the reference sample
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5  # a numeric feature with at most this many distinct values is tested as categorical
MAX_UNSEEN_LISTED = 5
MAX_DISTRIBUTION_CATEGORIES = 30  # categories kept in a report's distribution (the rest add up in "other")
Kind = Literal["numeric", "categorical"]


class DriftMethod(StrEnum):
    KS = "ks"
    CHISQUARE = "chisquare"
    Z = "z"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"
    PSI = "psi"

    @property
    def is_pvalue(self) -> bool:
        return self in (DriftMethod.KS, DriftMethod.CHISQUARE, DriftMethod.Z)

    @property
    def default_threshold(self) -> float:
        return 0.05 if self.is_pvalue else 0.1

    @property
    def needs_rows(self) -> bool:
        """KS and Wasserstein need the reference's rows; the others work on binned fractions too."""
        return self in (DriftMethod.KS, DriftMethod.WASSERSTEIN)


METHOD_NAMES = ", ".join(m.value for m in DriftMethod)


def parse_method(value: str, where: str = "method") -> DriftMethod:
    """The method called ``value``; an ``InvalidInputError`` naming the known ones otherwise."""
    try:
        return DriftMethod(value.strip().lower())
    except ValueError:
        raise InvalidInputError(f"{where}: unknown drift method {value!r}", f"use one of {METHOD_NAMES}") from None


# ----------------------------------------------------------------------------- settings


class FeatureDriftSettings(BaseModel):
    """The method and threshold of one feature (``None``: the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: DriftMethod | None = None
    threshold: float | None = Field(default=None, gt=0)


class DriftSettings(BaseModel):
    """``[monitoring.drift]`` of a project file, merged with the options of one request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: float = Field(default=0.5, gt=0, le=1, description="Share of drifted features that drifts the data.")
    sample_rows: int = Field(default=5000, ge=0, le=100_000, description="Reference rows kept in a new bundle.")
    window: str = Field(default="1d", description="Default window: N rows, a duration (30m, 6h, 1d) or A..B.")
    min_rows: int = Field(default=100, ge=1, description="A window with fewer rows is not judged by the monitor.")
    method: DriftMethod | None = Field(default=None, description="Method of every feature without its own.")
    threshold: float | None = Field(default=None, gt=0)
    features: dict[str, FeatureDriftSettings] = Field(default_factory=dict)
    prediction: FeatureDriftSettings = Field(default_factory=FeatureDriftSettings)

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, value: object) -> object:
        return parse_method(value) if isinstance(value, str) else value

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_window(value)  # raises InvalidInputError naming the accepted forms
        return value

    def for_feature(self, name: str) -> FeatureDriftSettings:
        """The settings of one feature (or of the prediction), falling back to the dataset-wide ones."""
        own = self.prediction if name == PREDICTION else self.features.get(name, FeatureDriftSettings())
        return FeatureDriftSettings(
            method=own.method or self.method,
            threshold=own.threshold if own.threshold is not None else self.threshold,
        )

    def merged(self, overrides: DriftSettings | dict[str, object]) -> DriftSettings:
        """These settings with ``overrides``' explicitly set fields (and per-feature entries) on top."""
        other = overrides if isinstance(overrides, DriftSettings) else DriftSettings.model_validate(overrides)
        data = self.model_dump()
        for key in other.model_fields_set - {"features"}:
            data[key] = getattr(other, key).model_dump() if key == "prediction" else getattr(other, key)
        features = {name: spec.model_dump() for name, spec in self.features.items()}
        for name, spec in other.features.items():
            features[name] = {**features.get(name, {}), **spec.model_dump(exclude_none=True)}
        data["features"] = features
        return DriftSettings.model_validate(data)


# ------------------------------------------------------------------------------ results


class DataQuality(BaseModel):
    """A feature's data quality in the window against the reference (``None``: not applicable)."""

    missing_reference: float | None = None
    missing_current: float | None = None
    out_of_range: float | None = Field(default=None, description="Share of values outside the training range.")
    unseen: float | None = Field(default=None, description="Share of values of categories the reference lacks.")
    unseen_values: list[str] = Field(default_factory=list, description="The most frequent unseen categories.")


class Distribution(BaseModel):
    """Reference and current shares of one feature, for charts: numeric bins on the reference
    profile's edges (``edges``: bins + 1 bounds; values outside the range in the end bins), or the
    profile's categories and ``__other__`` (``labels``). Shares of the non-null values."""

    kind: Kind
    edges: list[float] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    reference: list[float]
    current: list[float]


class FeatureDrift(BaseModel):
    """The drift of one feature (or of the prediction)."""

    feature: str
    kind: Kind
    method: DriftMethod | None = None
    statistic: float | None = None
    threshold: float | None = None
    drifted: bool = False
    score: float = Field(default=0.0, description="Statistic relative to its threshold: 1.0 at the threshold.")
    reference: Literal["sample", "profile"] | None = None
    current_values: int = 0
    quality: DataQuality = Field(default_factory=DataQuality)
    note: str | None = Field(default=None, description="Why no statistic was computed, or how it was.")
    distribution: Distribution | None = Field(default=None, description="Reference vs current shares.")


class DriftReport(BaseModel):
    """A drift report of one deployment's window against its served version's reference."""

    id: str
    project: str
    environment: str
    version: int = Field(description="The version whose reference the window is measured against.")
    served_version: int | None = Field(default=None, description="The version that answered the window's rows.")
    window: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    rows: int
    reference: Literal["sample", "profile"]
    reference_rows: int
    drift_share: float
    drifted_share: float
    drifted: bool
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = None
    notes: list[str] = Field(default_factory=list)
    computed_at: datetime

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


# ---------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class Reference:
    """What a window is compared with: the profile, the kinds of the features, and the sample if any."""

    profile: ReferenceProfile
    kinds: dict[str, Kind]
    sample: pd.DataFrame | None = None

    @property
    def source(self) -> Literal["sample", "profile"]:
        return "sample" if self.sample is not None else "profile"

    @property
    def rows(self) -> int:
        return len(self.sample) if self.sample is not None else self.profile.rows


def numeric_values(values: pd.Series) -> np.ndarray:
    """Finite values as float64 (anything else, including text that is no number, is missing)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        array = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        array = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return array[np.isfinite(array)]


def category_counts(values: pd.Series) -> pd.Series:
    """Counts of the non-null values as strings (booleans as ``True``/``False``, like the profile)."""
    import pandas as pd

    if values.dtype == object:  # mixed Python objects: True and 1 are equal keys, so stringify first
        values = values.dropna().astype(str)
    counts = values.value_counts(dropna=True)
    if counts.empty:
        return pd.Series(dtype="int64")
    # Count first, stringify the (few) distinct keys after: values that print alike (1 and "1") merge.
    counts.index = counts.index.map(str)
    return counts.groupby(level=0).sum() if counts.index.has_duplicates else counts


def _missing(values: pd.Series, present: np.ndarray | None) -> float | None:
    """Share of ``values`` that are not finite numbers (``present``: the finite ones, if known)."""
    if len(values) == 0 or present is None:
        return None
    return float(1.0 - present.size / len(values))


# ------------------------------------------------------------------------------ methods


def default_method(kind: Kind, reference_rows: int, distinct: int) -> DriftMethod:
    """Evidently's default test for a feature (``distinct``: distinct values of both sides together)."""
    categorical = kind == "categorical" or distinct <= FEW_VALUES
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if categorical:
            return DriftMethod.CHISQUARE if distinct > 2 else DriftMethod.Z
        return DriftMethod.KS
    return DriftMethod.JENSENSHANNON if categorical else DriftMethod.WASSERSTEIN


def _verdict(method: DriftMethod, statistic: float, threshold: float) -> tuple[bool, float]:
    """(drifted, score) of a statistic; Evidently's comparisons (KS: p <= t; chi-square, z: p < t)."""
    if method.is_pvalue:
        drifted = statistic <= threshold if method is DriftMethod.KS else statistic < threshold
        score = math.log(max(statistic, 1e-300)) / math.log(threshold) if threshold < 1 else 0.0
        return drifted, float(score)
    return statistic >= threshold, float(statistic / threshold)


def _aligned_counts(reference: pd.Series, current: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    keys = sorted(set(reference.index) | set(current.index))
    ref = reference.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    cur = current.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    return keys, ref, cur


def _categorical_statistic(method: DriftMethod, ref: np.ndarray, cur: np.ndarray) -> float:
    if method is DriftMethod.CHISQUARE:
        return drift_stats.chisquare_pvalue(ref, cur)
    if method is DriftMethod.Z:
        return drift_stats.z_pvalue(ref, cur)
    ref_f, cur_f = drift_stats.category_fractions(ref, cur)
    if method is DriftMethod.PSI:
        return drift_stats.psi(ref_f, cur_f)
    return drift_stats.jensenshannon_distance(ref_f, cur_f)


def _numeric_statistic(method: DriftMethod, ref: np.ndarray, cur: np.ndarray) -> float:
    if method is DriftMethod.KS:
        return drift_stats.ks_pvalue(ref, cur)
    if method is DriftMethod.WASSERSTEIN:
        return drift_stats.wasserstein_normed(ref, cur)
    ref_f, cur_f = drift_stats.binned_fractions(ref, cur)
    return (
        drift_stats.psi(ref_f, cur_f) if method is DriftMethod.PSI else drift_stats.jensenshannon_distance(ref_f, cur_f)
    )


def _counts_of_values(values: np.ndarray) -> pd.Series:
    import numpy as np
    import pandas as pd

    keys, counts = np.unique(values, return_counts=True)
    return pd.Series(counts, index=[repr(float(k)) for k in keys])


# -------------------------------------------------------------------------------- features


def feature_drift(
    name: str,
    kind: Kind,
    current: pd.Series,
    reference: Reference,
    settings: FeatureDriftSettings = FeatureDriftSettings(),
) -> FeatureDrift:
    """The drift and data quality of one feature (``current``: its values in the window, nulls included)."""
    profile = reference.profile.features.get(name)
    base = FeatureDrift(feature=name, kind=kind, reference=reference.source)
    if profile is not None and profile.sensitive:
        return base.model_copy(update={"reference": None, "note": "sensitive: profiled without values, not measured"})
    sample = reference.sample[name] if reference.sample is not None and name in reference.sample else None
    if sample is None and profile is None:
        return base.model_copy(update={"reference": None, "note": "no reference for this column"})
    if kind == "numeric":
        return _numeric_drift(base, current, sample, profile, settings)
    return _categorical_drift(base, current, sample, profile, settings)


def _empty_note(current: pd.Series, present: int) -> str | None:
    if len(current) == 0:
        return "no rows in the window"
    if present == 0:
        return "no values in the window (missing from every row)"
    return None


def _numeric_drift(
    base: FeatureDrift,
    current: pd.Series,
    sample: pd.Series | None,
    profile: NumericProfile | CategoricalProfile | None,
    settings: FeatureDriftSettings,
) -> FeatureDrift:
    import numpy as np

    cur = numeric_values(current)
    numeric_profile = profile if isinstance(profile, NumericProfile) else None
    ref = numeric_values(sample) if sample is not None else None
    low, high = _range(ref, numeric_profile)
    quality = DataQuality(
        missing_reference=_missing(sample, ref) if sample is not None else (profile.null_fraction if profile else None),
        missing_current=_missing(current, cur),
        out_of_range=float(np.mean((cur < low) | (cur > high))) if cur.size and low is not None else None,
    )
    result = base.model_copy(update={"quality": quality, "current_values": int(cur.size)})
    note = _empty_note(current, cur.size)
    if note:
        return result.model_copy(update={"note": note})
    if ref is not None:
        if ref.size == 0:
            return result.model_copy(update={"note": "the reference has no values of this feature"})
        method = settings.method or _numeric_default(ref, cur)
        if method in (DriftMethod.CHISQUARE, DriftMethod.Z):
            _, ref_c, cur_c = _aligned_counts(_counts_of_values(ref), _counts_of_values(cur))
            statistic = _categorical_statistic(method, ref_c, cur_c)
        else:
            statistic = _numeric_statistic(method, ref, cur)
        return _finish(result, method, statistic, settings)
    return _numeric_from_profile(result, current, numeric_profile, settings)


def _numeric_default(ref: np.ndarray, cur: np.ndarray) -> DriftMethod:
    import numpy as np

    ref_distinct = np.unique(ref)
    distinct = ref_distinct.size if ref_distinct.size > FEW_VALUES else np.union1d(ref_distinct, cur).size
    return default_method("numeric", ref.size, int(distinct))


def _range(ref: np.ndarray | None, profile: NumericProfile | None) -> tuple[float | None, float | None]:
    if profile is not None and profile.minimum is not None and profile.maximum is not None:
        return profile.minimum, profile.maximum
    if ref is not None and ref.size:
        return float(ref.min()), float(ref.max())
    return None, None


def _numeric_from_profile(
    result: FeatureDrift, current: pd.Series, profile: NumericProfile | None, settings: FeatureDriftSettings
) -> FeatureDrift:
    import numpy as np

    if profile is None or len(profile.bin_edges) < 2:
        return result.model_copy(update={"note": "the reference profile has no histogram of this feature"})
    method = settings.method or DriftMethod.JENSENSHANNON
    if method.needs_rows or method in (DriftMethod.CHISQUARE, DriftMethod.Z):
        return result.model_copy(
            update={
                "method": method,
                "note": f"{method.value} needs reference rows, and this version has only a histogram profile "
                "(registered before reference samples): use jensenshannon or psi, or register it again",
            }
        )
    ref_f = np.asarray(profile.bin_fractions, dtype="float64")
    cur_f = np.asarray(bin_fractions_for(current, profile), dtype="float64")
    statistic = (
        drift_stats.psi(ref_f, cur_f) if method is DriftMethod.PSI else drift_stats.jensenshannon_distance(ref_f, cur_f)
    )
    finished = _finish(result, method, statistic, settings)
    return finished.model_copy(update={"note": "binned on the reference profile's histogram (no reference sample)"})


def _categorical_drift(
    base: FeatureDrift,
    current: pd.Series,
    sample: pd.Series | None,
    profile: NumericProfile | CategoricalProfile | None,
    settings: FeatureDriftSettings,
) -> FeatureDrift:
    import pandas as pd

    cur_counts = category_counts(current)
    present = int(cur_counts.sum())
    categorical_profile = profile if isinstance(profile, CategoricalProfile) else None
    if sample is not None:
        ref_counts = category_counts(sample)
        known = set(ref_counts.index)
        missing_reference = float(sample.isna().mean()) if len(sample) else None
    elif categorical_profile is not None:
        ref_counts = pd.Series(
            {key: fraction * categorical_profile.count for key, fraction in categorical_profile.frequencies.items()}
        )
        known = set(ref_counts.index)
        if categorical_profile.other_fraction > 0:
            ref_counts[OTHER_KEY] = categorical_profile.other_fraction * categorical_profile.count
        missing_reference = categorical_profile.null_fraction
    else:
        return base.model_copy(update={"note": "the reference profile has no categories of this feature"})
    unseen = cur_counts[[key not in known for key in cur_counts.index]] if present else cur_counts
    quality = DataQuality(
        missing_reference=missing_reference,
        missing_current=float(current.isna().mean()) if len(current) else None,
        unseen=float(unseen.sum() / present) if present else None,
        unseen_values=[str(key)[:64] for key in unseen.sort_values(ascending=False).index[:MAX_UNSEEN_LISTED]],
    )
    result = base.model_copy(update={"quality": quality, "current_values": present})
    note = _empty_note(current, present)
    if note:
        return result.model_copy(update={"note": note})
    if ref_counts.sum() == 0:
        return result.model_copy(update={"note": "the reference has no values of this feature"})
    if sample is None and OTHER_KEY in ref_counts.index:
        # The profile keeps the top categories only: whatever else the window holds is compared as "other".
        other = cur_counts[[key not in known for key in cur_counts.index]].sum()
        cur_counts = cur_counts[[key in known for key in cur_counts.index]]
        cur_counts[OTHER_KEY] = other
    keys, ref_c, cur_c = _aligned_counts(ref_counts, cur_counts)
    method = settings.method or default_method("categorical", int(ref_c.sum()), len(keys))
    if method.needs_rows:
        return result.model_copy(
            update={"method": method, "note": f"{method.value} applies to numeric features only: use {METHOD_NAMES}"}
        )
    return _finish(result, method, _categorical_statistic(method, ref_c, cur_c), settings)


def _finish(
    result: FeatureDrift, method: DriftMethod, statistic: float, settings: FeatureDriftSettings
) -> FeatureDrift:
    import numpy as np

    threshold = settings.threshold if settings.threshold is not None else method.default_threshold
    if not math.isfinite(statistic):
        statistic = 0.0 if method.is_pvalue else float(np.finfo("float64").max)
    drifted, score = _verdict(method, statistic, threshold)
    return result.model_copy(
        update={"method": method, "statistic": statistic, "threshold": threshold, "drifted": drifted, "score": score}
    )


# --------------------------------------------------------------------------------- dataset


def rank(features: list[FeatureDrift]) -> list[FeatureDrift]:
    """Drifted features first, then by score (most drift first), then by name."""
    return sorted(features, key=lambda f: (not f.drifted, -f.score, f.feature))


def compute_drift(
    current: pd.DataFrame,
    reference: Reference,
    settings: DriftSettings,
    prediction_kind: Kind | None = None,
) -> tuple[list[FeatureDrift], FeatureDrift | None, float, bool]:
    """Ranked feature drifts, the prediction's drift, the drifted share and the dataset verdict.

    ``current`` holds one column per reference feature (a missing column counts as all missing) and,
    when ``prediction_kind`` is given, the model's outputs in ``PREDICTION``.
    """
    import pandas as pd

    features: list[FeatureDrift] = []
    for name, kind in reference.kinds.items():
        values = current[name] if name in current else pd.Series([None] * len(current), dtype="object")
        drift = feature_drift(name, kind, values, reference, settings.for_feature(name))
        features.append(drift.model_copy(update={"distribution": distribution(name, values, reference)}))
    measured = [f for f in features if f.statistic is not None]
    share = sum(f.drifted for f in measured) / len(measured) if measured else 0.0
    drifted = bool(measured) and share >= settings.drift_share
    prediction = None
    if prediction_kind is not None:
        if reference.sample is not None and PREDICTION in reference.sample:
            values = current[PREDICTION] if PREDICTION in current else pd.Series([], dtype="object")
            prediction = feature_drift(PREDICTION, prediction_kind, values, reference, settings.for_feature(PREDICTION))
        else:
            prediction = FeatureDrift(
                feature=PREDICTION,
                kind=prediction_kind,
                note="the version has no reference predictions (registered before reference samples)",
            )
    return rank(features), prediction, float(share), drifted


def distribution(name: str, current: pd.Series, reference: Reference) -> Distribution | None:
    """The feature's reference and current shares on the reference profile's bins or categories (None:
    sensitive, or no usable profile). One binning pass over the window's values: cheap next to the test."""
    profile = reference.profile.features.get(name)
    if profile is None or profile.sensitive:
        return None
    if isinstance(profile, NumericProfile):
        if len(profile.bin_edges) < 2:
            return None
        return Distribution(
            kind="numeric",
            edges=list(profile.bin_edges),
            reference=list(profile.bin_fractions),
            current=bin_fractions_for(current, profile),
        )
    kept = sorted(profile.frequencies.items(), key=lambda item: -item[1])[:MAX_DISTRIBUTION_CATEGORIES]
    shares = category_fractions_for(current, profile)
    labels = [key for key, _ in kept]
    ref = [fraction for _, fraction in kept]
    cur = [shares.get(key, 0.0) for key in labels]
    ref_other = 1.0 - sum(ref)
    cur_other = 1.0 - sum(cur) if sum(shares.values()) > 0 else 0.0
    if ref_other > 1e-9 or cur_other > 1e-9:
        labels.append(OTHER_KEY)
        ref.append(max(0.0, ref_other))
        cur.append(max(0.0, cur_other))
    return Distribution(kind="categorical", labels=labels, reference=ref, current=cur)
