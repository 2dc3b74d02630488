"""A project whose production data drifts away from its training data, and production traffic with ground
truth written as a replica and a feedback sender would (for the retraining and evaluation tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.prediction_log import write_predictions

PROJECT = "shifty"
SYSTEM = Actor.system("tests")

TOML = """
[project]
name = "shifty"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "shifty_model:train"

[evaluation]
holdout = 0.25
seed = 0

[retrain]
min_rows = 60
holdout = 0.25
"""

MODEL = '''
"""The data scientist's training code: a logistic regression on both features."""

from sklearn.linear_model import LogisticRegression


def train():
    return LogisticRegression(max_iter=1000)
'''


def frame(rows: int, *, seed: int, shifted: bool = False) -> pd.DataFrame:
    """x1, x2 and y. Training data: y = x1 > x2. Shifted production data: x1 moved up by 5 and the
    relation turned around (y = x2 > x1 - 5), so a model trained before the shift is right half the time."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 10, rows).round(3), rng.uniform(0, 10, rows).round(3)
    if shifted:
        x1 = (x1 + 5).round(3)
        y = (x2 > x1 - 5).astype(int)
    else:
        y = (x1 > x2).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


def write_project(folder: Path, toml: str = TOML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "harbourmaster.toml").write_text(toml)
    (folder / "shifty_model.py").write_text(MODEL)
    (folder / "data").mkdir(exist_ok=True)
    frame(600, seed=0).to_csv(folder / "data" / "train.csv", index=False)
    return folder


def log_traffic(
    platform: Platform,
    data: pd.DataFrame,
    *,
    version: int,
    environment: str,
    prefix: str = "req",
    start: datetime | None = None,
    labelled: int | None = None,
) -> list[str]:
    """``data`` as answered requests, one a second from ``start`` (default: 20 minutes ago), and the ground
    truth of the first ``labelled`` (default all) sent as feedback; returns the request ids."""
    start = start or datetime.now(UTC) - timedelta(minutes=20)
    ids = [f"{prefix}-{i}" for i in range(len(data))]
    rows = [
        {
            "request_id": ids[i],
            "row": 0,
            "ts": start + timedelta(seconds=i),
            "environment": environment,
            "project": PROJECT,
            "version": version,
            "path": "champion",
            "reason": None,
            "status": 200,
            "latency_ms": 1.0,
            "inputs": json.dumps({"x1": _plain(record.x1), "x2": _plain(record.x2)}),
            "output": json.dumps(1),
            "probabilities": None,
            "shadow_version": None,
            "shadow_output": None,
            "replica": "r1",
        }
        for i, record in enumerate(data.itertuples(index=False))
    ]
    write_predictions(platform.artifacts, rows)
    count = len(data) if labelled is None else labelled
    if count:
        truth = [(ids[i], 0, int(data["y"].iloc[i])) for i in range(count)]
        platform.feedback.record(SYSTEM, PROJECT, environment, truth)
    return ids


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
