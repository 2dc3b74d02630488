"""The demo project's data pipeline: runs identically in training and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


def prepare(records: pd.DataFrame) -> pd.DataFrame:
    """Raw measurements in, model-ready features out (adds two shape ratios)."""
    frame = records.copy()
    frame["compactness ratio"] = frame["worst compactness"] / (frame["mean compactness"] + 1e-9)
    frame["area growth"] = frame["worst area"] / (frame["mean area"] + 1e-9)
    return frame


class ClipOutliers(BaseEstimator, TransformerMixin):
    """Clips every column to the quantile range seen in training (a custom transformer)."""

    def __init__(self, lower: float = 0.01, upper: float = 0.99) -> None:
        self.lower = lower
        self.upper = upper

    def fit(self, features: pd.DataFrame, target: object = None) -> ClipOutliers:
        values = np.asarray(features, dtype=float)
        self.low_ = np.quantile(values, self.lower, axis=0)
        self.high_ = np.quantile(values, self.upper, axis=0)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        return np.clip(np.asarray(features, dtype=float), self.low_, self.high_)
