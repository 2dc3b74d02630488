"""Which raw columns a fitted pipeline does not read (an order id its ``prepare`` step drops, a column a
``ColumnTransformer`` leaves out), found by asking the pipeline itself.

A column is unread when the pipeline's answers on a sample of its training data stay exactly the same
both with the column's values shifted one row and with the column blanked (null): then a request that
leaves the column out (the pipeline sees a null) gets the answer it would have got with it. Any change,
or any error, counts as read. Runs the project's code, so only where training or registration runs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["USAGE_MAX_COLUMNS", "USAGE_SAMPLE_ROWS", "unread_columns"]

USAGE_SAMPLE_ROWS = 200
USAGE_MAX_COLUMNS = 256
"""Wider frames are not probed (two predictions per column): declare unread columns there instead."""


def _answerers(model: Any) -> list[Any]:
    """The model's ways of answering: probabilities first (they move with almost any read column, so a
    probe usually stops there), then labels."""
    proba = getattr(model, "predict_proba", None)
    return [proba, model.predict] if callable(proba) else [model.predict]


def _answers(model: Any, frame: pd.DataFrame) -> list[np.ndarray]:
    import numpy as np

    return [np.asarray(answer(frame)) for answer in _answerers(model)]


def _same_answers(model: Any, baseline: list[np.ndarray], frame: pd.DataFrame) -> bool:
    """Whether ``model`` answers ``frame`` exactly as ``baseline``; stops at the first answer that differs."""
    import numpy as np

    return all(
        _same_array(expected, np.asarray(answer(frame)))
        for expected, answer in zip(baseline, _answerers(model), strict=True)
    )


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    import numpy as np

    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _variants(frame: pd.DataFrame, name: str) -> Iterable[pd.DataFrame]:
    import numpy as np
    import pandas as pd

    shifted = frame.copy()
    rolled = pd.Series(np.roll(frame[name].to_numpy(dtype=object), 1), index=frame.index)
    try:
        shifted[name] = rolled.astype(frame[name].dtype)
    except (TypeError, ValueError):
        shifted[name] = rolled
    yield shifted
    blanked = frame.copy()
    blanked[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    yield blanked


def unread_columns(model: Any, features: pd.DataFrame, skip: Iterable[str] = ()) -> list[str]:
    """Columns of ``features`` (raw training columns) whose values ``model``'s answers do not depend on.

    ``skip`` names columns not to test (their role is declared). Returns [] when the model cannot answer
    on the sample at all, for a single-column frame (a pipeline reads at least one column), and for a
    frame wider than ``USAGE_MAX_COLUMNS``.
    """
    skipped = {str(name) for name in skip}
    if not 2 <= features.shape[1] <= USAGE_MAX_COLUMNS:
        return []
    sample = features.head(USAGE_SAMPLE_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the probes are ours: the project's warnings on them are noise
        try:
            baseline = _answers(model, sample)
        except Exception:
            return []
        unread: list[str] = []
        for name in sample.columns:
            if str(name) in skipped:
                continue
            try:
                if all(_same_answers(model, baseline, variant) for variant in _variants(sample, name)):
                    unread.append(str(name))
            except Exception:  # the pipeline needs the column (or its type): it reads it
                continue
    if len(unread) == sample.shape[1]:
        return []  # answers independent of every column: a constant model, nothing to learn about columns
    return unread
