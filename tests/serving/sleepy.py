"""A test project whose versions misbehave on purpose: slow on a flagged input, raising on another, or
hanging at warm-up while a file exists; plus a fallback function that raises."""

from __future__ import annotations

from pathlib import Path

from tests.serving.projects import _write, moody_frame

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

SLEEPY = "sleepy"
SLOW, RAISE = 777.0, 444.0  # values of x1 the misbehaving versions react to
SLOW_SECONDS = 3.0

SLEEPY_TOML = """
[project]
name = "sleepy"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "sleepy_model:train"
params = { slow_seconds = 0.0, hang_file = "" }

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

SLEEPY_MODEL = f'''
"""A classifier that sleeps on a flagged input, raises on another, and hangs while ``hang_file`` exists."""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

SLOW, RAISE = {SLOW!r}, {RAISE!r}


class Sleepy(BaseEstimator, ClassifierMixin):
    def __init__(self, slow_seconds: float = 0.0, hang_file: str = "") -> None:
        self.slow_seconds = slow_seconds
        self.hang_file = hang_file

    def fit(self, features, target):
        self.model_ = LogisticRegression().fit(np.asarray(features, dtype=float), target)
        self.classes_ = self.model_.classes_
        return self

    def _misbehave(self, values):
        while self.hang_file and os.path.exists(self.hang_file):  # a Python loop that never ends by itself
            time.sleep(0.05)
        if self.slow_seconds:
            x1 = values[:, 0]
            if (x1 == RAISE).any():
                raise ValueError("flagged input")
            if (x1 == SLOW).any():
                time.sleep(self.slow_seconds)

    def predict(self, features):
        values = np.asarray(features, dtype=float)
        self._misbehave(values)
        return self.model_.predict(values)

    def predict_proba(self, features):
        return self.model_.predict_proba(np.asarray(features, dtype=float))


def train(slow_seconds: float = 0.0, hang_file: str = "") -> Sleepy:
    return Sleepy(slow_seconds=slow_seconds, hang_file=hang_file)


def broken_fallback(frame):
    raise RuntimeError("the fallback function has a bug")
'''


def train_sleepy(platform: Platform, folder: Path) -> dict[str, int]:
    """``fast`` (well behaved), ``slow`` (sleeps SLOW_SECONDS on x1 == SLOW, raises on RAISE) and ``hang``
    (warm-up hangs while ``folder/hang`` exists; the file is created after training)."""
    actor = Actor.local_owner()
    project = _write(folder / SLEEPY, SLEEPY_TOML, "sleepy_model", SLEEPY_MODEL, moody_frame())
    fast = platform.training.train(actor, project).version.number
    toml = project / "harbourmaster.toml"
    toml.write_text(SLEEPY_TOML.replace("slow_seconds = 0.0", f"slow_seconds = {SLOW_SECONDS}"))
    slow = platform.training.train(actor, project).version.number
    toml.write_text(SLEEPY_TOML.replace('hang_file = ""', f"hang_file = {str(folder / 'hang')!r}"))
    hang = platform.training.train(actor, project).version.number
    return {"fast": fast, "slow": slow, "hang": hang}
