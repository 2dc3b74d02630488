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


PROBE = "probe"

PROBE_TOML = """
[project]
name = "probe"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "probe_model:train"
params = { mode = "MODE", pidfile = "PIDFILE" }

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

# A sound classifier whose predict, in a process that only loaded it, does what ``mode`` says: the
# warm-up's isolation is what these modes test.
PROBE_MODEL = '''
"""A classifier that probes the process it is loaded in."""

from __future__ import annotations

import os
import time

import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class Probe(BaseEstimator, ClassifierMixin):
    def __init__(self, mode: str = "", pidfile: str = "") -> None:
        self.mode = mode
        self.pidfile = pidfile

    def fit(self, features, target):
        self.model_ = LogisticRegression().fit(features, target)
        self.classes_ = self.model_.classes_
        self.trained_in_ = os.getpid()
        return self

    def _probe(self) -> None:
        if os.getpid() == self.trained_in_:
            return
        if self.mode == "exit":
            os._exit(3)
        if self.mode == "hang":
            with open(self.pidfile, "w") as out:
                out.write(str(os.getpid()))
            time.sleep(3600)
        if self.mode == "secrets":
            leaked = [k for k in os.environ if k.startswith(("HARBOURMASTER_", "PG", "AWS_"))]
            if leaked:
                raise RuntimeError(f"credentials reached the warm-up: {leaked}")
        if self.mode == "mark":
            if getattr(sklearn, "_probe_mark", os.getpid()) != os.getpid():
                raise RuntimeError("an earlier warm-up's change is still there")
            sklearn._probe_mark = os.getpid()

    def predict(self, features):
        self._probe()
        return self.model_.predict(features)

    def predict_proba(self, features):
        self._probe()
        return self.model_.predict_proba(features)


def train(mode: str = "", pidfile: str = "") -> Probe:
    return Probe(mode=mode, pidfile=pidfile)
'''


def write_probe(folder: Path, mode: str, pidfile: Path | None = None) -> Path:
    """The probe project, its predict doing ``mode`` (exit, hang, secrets, mark) in a process that only loaded it."""
    toml = PROBE_TOML.replace("MODE", mode).replace("PIDFILE", str(pidfile or ""))
    return _write(folder / PROBE, toml, "probe_model", PROBE_MODEL, moody_frame())
