"""Tests for harbourmaster.core.digest."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from harbourmaster.core.digest import canonical_json, frame_fingerprint, sha256_bytes, sha256_json


def test_sha256_bytes_matches_hashlib() -> None:
    assert sha256_bytes(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_canonical_json_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, 2], "é": "ü"}) == '{"a":[1,2],"b":1,"é":"ü"}'.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_canonical_json_rejects_nan(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_json(bad)


def test_sha256_json_independent_of_key_order() -> None:
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", None], "z": [0.5, np.nan, 1.5]})


def test_frame_fingerprint_stable_and_ignores_index() -> None:
    frame = _frame()
    fp = frame_fingerprint(frame)
    assert len(fp) == 64
    assert fp == frame_fingerprint(_frame())
    assert fp == frame_fingerprint(frame.set_axis([10, 20, 30]))


def test_frame_fingerprint_sensitive_to_values_names_dtypes_order() -> None:
    frame = _frame()
    fp = frame_fingerprint(frame)
    changed = frame.copy()
    changed.loc[0, "x"] = 9
    assert frame_fingerprint(changed) != fp
    assert frame_fingerprint(frame.rename(columns={"x": "w"})) != fp
    assert frame_fingerprint(frame.astype({"x": "float64"})) != fp
    assert frame_fingerprint(frame.iloc[::-1]) != fp
    assert frame_fingerprint(frame[["y", "x", "z"]]) != fp


def test_frame_fingerprint_empty_frames() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype="int64")})
    assert frame_fingerprint(empty) == frame_fingerprint(empty.copy())
    assert frame_fingerprint(empty) != frame_fingerprint(pd.DataFrame())
