"""A project shaped like real data, written under tmp_path: an order date, an order id its ``prepare`` step drops,
a categorical channel, numbers, and either a multi-class target (segment) or a regression target (margin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRAINING_WINDOW = ("2024-01-01", "2024-06-30")

PREPARE = '''
"""Raw orders -> model-ready frame: the order id is dropped, the date becomes weekday and month."""

import pandas as pd


def prepare(frame):
    out = frame.drop(columns=["order_id"])
    dates = pd.to_datetime(out.pop("order_date"), format="ISO8601")
    out["weekday"] = dates.dt.day_of_week
    out["month"] = dates.dt.month
    return out
'''

MODEL = '''
"""One-hot channel, scale numbers; a logistic regression (segment) or a ridge regression (margin)."""

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def train(kind="classification"):
    columns = ColumnTransformer(
        [
            ("channel", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
            ("numbers", StandardScaler(), ["amount", "items", "weekday", "month"]),
        ]
    )
    model = LogisticRegression(max_iter=500) if kind == "classification" else Ridge(alpha=1.0)
    return Pipeline([("columns", columns), ("model", model)])
'''


def orders_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Orders dated inside TRAINING_WINDOW; ``segment`` (3 classes) and ``margin`` follow amount and channel."""
    rng = np.random.default_rng(seed)
    start, end = (pd.Timestamp(day) for day in TRAINING_WINDOW)
    days = rng.integers(0, (end - start).days + 1, rows)
    amount = rng.uniform(5, 500, rows).round(2)
    channel = rng.choice(["web", "shop", "phone"], rows)
    items = rng.integers(1, 10, rows)
    bonus = np.where(channel == "web", 60.0, 0.0)
    segment = np.select([amount + bonus < 170, amount + bonus < 340], ["low", "mid"], "high")
    return pd.DataFrame(
        {
            "order_id": np.arange(100_000, 100_000 + rows),
            "order_date": [(start + pd.Timedelta(days=int(d))).date().isoformat() for d in days],
            "channel": channel,
            "amount": amount,
            "items": items,
            "segment": segment,
            "margin": (amount * 0.3 + bonus + rng.normal(0, 5, rows)).round(2),
        }
    )


def write_orders_project(
    folder: Path, *, name: str = "orders", target: str = "segment", schema: str = "", evaluation: str = ""
) -> Path:
    """The project folder: harbourmaster.toml, prepare.py, model.py, data/train.csv (the other target dropped)."""
    kind = "classification" if target == "segment" else "regression"
    other = "margin" if target == "segment" else "segment"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    orders_frame().drop(columns=[other]).to_csv(folder / "data" / "train.csv", index=False)
    (folder / "prepare.py").write_text(PREPARE)
    (folder / "model.py").write_text(MODEL)
    (folder / "harbourmaster.toml").write_text(
        f"""
[project]
name = "{name}"

[data]
source = "data/train.csv"
target = "{target}"

[pipeline]
prepare = "prepare:prepare"
train = "model:train"
params = {{ kind = "{kind}" }}

[evaluation]
holdout = 0.25
seed = 1
{evaluation}
{schema}
"""
    )
    return folder
