"""Which raw columns a fitted pipeline reads, found by asking it (real scikit-learn pipelines, no stand-ins)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from harbourmaster.services.column_usage import USAGE_MAX_COLUMNS, unread_columns


def _frame(rows: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(rows),
            "amount": rng.uniform(0, 100, rows),
            "channel": rng.choice(["web", "shop"], rows),
            "note": [f"note {i}" for i in range(rows)],
        }
    )
    return frame, pd.Series((frame["amount"] > 50).astype(int) ^ (frame["channel"] == "web"))


def test_columns_dropped_by_prepare_or_left_out_by_a_column_transformer_are_unread() -> None:
    frame, target = _frame()
    columns = ColumnTransformer([("amount", "passthrough", ["amount"]), ("channel", OneHotEncoder(), ["channel"])])
    dropped = FunctionTransformer(lambda f: f.drop(columns=["order_id"]))
    pipeline = Pipeline([("prepare", dropped), ("columns", columns), ("model", LogisticRegression())])
    pipeline.fit(frame, target)
    assert unread_columns(pipeline, frame) == ["order_id", "note"]
    assert unread_columns(pipeline, frame, skip=["note"]) == ["order_id"]  # a declared role is not probed


def test_a_column_read_through_an_imputer_is_read_and_a_constant_model_reads_nothing_we_can_tell() -> None:
    frame, target = _frame()
    numbers = frame[["order_id", "amount"]]
    imputed = Pipeline([("impute", SimpleImputer()), ("model", LogisticRegression(max_iter=1000))])
    imputed.fit(numbers, target)
    assert unread_columns(imputed, numbers) == []
    constant = DummyClassifier(strategy="most_frequent").fit(numbers, target)
    assert unread_columns(constant, numbers) == []  # every column "unread": no information, nothing marked
    wide = pd.DataFrame(np.zeros((5, USAGE_MAX_COLUMNS + 1)), columns=[f"c{i}" for i in range(USAGE_MAX_COLUMNS + 1)])
    assert unread_columns(constant, wide) == []
