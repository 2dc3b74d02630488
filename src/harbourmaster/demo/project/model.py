"""The demo project's training entrypoint."""

from __future__ import annotations

from features import ClipOutliers
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def train(C: float = 1.0) -> Pipeline:
    """An unfitted pipeline; Harbourmaster fits it on the training split."""
    return Pipeline(
        [
            ("clip", ClipOutliers()),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=C, max_iter=5000)),
        ]
    )
