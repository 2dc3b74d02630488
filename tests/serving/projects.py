"""Small test projects written under tmp_path: a moody classifier (slow, NaN or invalid on flagged inputs)
and a classifier over a categorical (string) column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

MOODY = "moody"
COLOURS = "colours"
SLOW, NAN, INVALID, RAISE = 777.0, 666.0, 555.0, 444.0  # values of x1 the misbehaving version reacts to
SLOW_SECONDS = 0.6

MOODY_TOML = """
[project]
name = "moody"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "moody_model:train"
params = { misbehave = true }

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

MOODY_MODEL = f'''
"""A classifier that, when told to misbehave, is slow, answers NaN or an unknown label on flagged inputs."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

SLOW, NAN, INVALID, RAISE = {SLOW!r}, {NAN!r}, {INVALID!r}, {RAISE!r}


class Moody(BaseEstimator, ClassifierMixin):
    def __init__(self, misbehave: bool = False) -> None:
        self.misbehave = misbehave

    def fit(self, features, target):
        self.model_ = LogisticRegression().fit(np.asarray(features, dtype=float), target)
        self.classes_ = self.model_.classes_
        return self

    def _x1(self, features):
        return np.asarray(features, dtype=float)[:, 0]

    def predict(self, features):
        values = np.asarray(features, dtype=float)
        labels = self.model_.predict(values)
        if not self.misbehave:
            return labels
        x1 = self._x1(values)
        if (x1 == RAISE).any():
            raise ValueError("flagged input")
        if (x1 == SLOW).any():
            time.sleep({SLOW_SECONDS!r})
        if (x1 == NAN).any():
            labels = labels.astype(float)
            labels[x1 == NAN] = np.nan
        if (x1 == INVALID).any():
            labels = labels.copy()
            labels[x1 == INVALID] = 7
        return labels

    def predict_proba(self, features):
        values = np.asarray(features, dtype=float)
        proba = self.model_.predict_proba(values)
        if self.misbehave:
            proba[self._x1(values) == NAN] = np.nan
        return proba


def train(misbehave: bool = False) -> Moody:
    return Moody(misbehave=misbehave)
'''

COLOURS_TOML = """
[project]
name = "colours"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "colour_model:train"

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

COLOURS_MODEL = '''
"""One-hot colour + a numeric size, logistic regression."""

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def train() -> Pipeline:
    columns = ColumnTransformer(
        [("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough"
    )
    return Pipeline([("columns", columns), ("classify", LogisticRegression())])
'''


def _write(folder: Path, toml: str, module: str, code: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "harbourmaster.toml").write_text(toml)
    (folder / f"{module}.py").write_text(code)
    (folder / "data").mkdir(exist_ok=True)
    frame.to_csv(folder / "data" / "train.csv", index=False)
    return folder


def moody_frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 10, rows).round(3), rng.uniform(0, 10, rows).round(3)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": (x1 + x2 > 10).astype(int)})


def colours_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], rows)
    size = rng.uniform(0, 10, rows).round(3)
    y = ((colour == "red") | (size > 7)).astype(int)
    return pd.DataFrame({"colour": colour, "size": size, "y": y})


def train_moody(platform: Platform, folder: Path) -> dict[str, int]:
    """v1 misbehaves on flagged inputs (slow, NaN, invalid label); v2 is the same model, well behaved."""
    actor = Actor.local_owner()
    project = _write(folder / MOODY, MOODY_TOML, "moody_model", MOODY_MODEL, moody_frame())
    bad = platform.training.train(actor, project).version.number
    (project / "harbourmaster.toml").write_text(MOODY_TOML.replace("misbehave = true", "misbehave = false"))
    good = platform.training.train(actor, project).version.number
    return {"bad": bad, "good": good}


def train_colours(platform: Platform, folder: Path) -> int:
    project = _write(folder / COLOURS, COLOURS_TOML, "colour_model", COLOURS_MODEL, colours_frame())
    return platform.training.train(Actor.local_owner(), project).version.number
