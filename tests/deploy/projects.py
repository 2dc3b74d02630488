"""Test projects whose versions train and evaluate fine but cannot answer once loaded elsewhere."""

from __future__ import annotations

from pathlib import Path

from tests.serving.projects import _write, moody_frame

FORGETFUL = "forgetful"

TOML = """
[project]
name = "forgetful"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "forgetful_model:train"
params = { hang = false }

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

# The fitted state lives in a module global, not in the model: predicting works in the process that
# trained it and fails (or, with hang = true, never ends) in any process that only loaded the model.
MODEL = '''
"""A classifier that keeps what it learned outside itself (a bug that works in a notebook)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

_LEARNED = {}


class Forgetful(BaseEstimator, ClassifierMixin):
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang

    def fit(self, features, target):
        _LEARNED["model"] = LogisticRegression().fit(np.asarray(features, dtype=float), target)
        self.classes_ = _LEARNED["model"].classes_
        return self

    def predict(self, features):
        while self.hang and "model" not in _LEARNED:
            time.sleep(0.05)
        return _LEARNED["model"].predict(np.asarray(features, dtype=float))

    def predict_proba(self, features):
        return _LEARNED["model"].predict_proba(np.asarray(features, dtype=float))


def train(hang: bool = False) -> Forgetful:
    return Forgetful(hang=hang)
'''


def write_forgetful(folder: Path, *, hang: bool = False) -> Path:
    """The forgetful project (``hang``: its predict waits forever instead of failing)."""
    toml = TOML.replace("hang = false", "hang = true") if hang else TOML
    return _write(folder / FORGETFUL, toml, "forgetful_model", MODEL, moody_frame())
