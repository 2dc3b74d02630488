"""Fixtures shared by the bundle tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.bundle import Bundle, build_bundle
from harbourmaster.config import Settings
from harbourmaster.store.artifacts import ArtifactStore


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    return features, target


@pytest.fixture(scope="session")
def cancer_pipeline(cancer: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    features, target = cancer
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    return pipeline.fit(features, target)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, database_url="sqlite://", artifacts_url=str(tmp_path / "artifacts"))


@pytest.fixture
def make_bundle() -> Callable[..., Bundle]:
    """build_bundle with plausible metadata for a frame's columns."""

    def make(model: Any, frame: pd.DataFrame, **overrides: Any) -> Bundle:
        arguments: dict[str, Any] = {
            "format": "skops",
            "code_files": {},
            "prepare": None,
            "input_schema": {"columns": [{"name": str(c), "dtype": str(frame[c].dtype)} for c in frame]},
            "output_schema": {"kind": "classification"},
            "profile": {"rows": len(frame)},
            "metrics": {"accuracy": 0.95},
            "lineage": {"parameters": {"C": 1.0}},
            "reference_row": {str(k): float(v) for k, v in frame.iloc[0].items()},
        }
        arguments.update(overrides)
        return build_bundle(model, **arguments)

    return make


@pytest.fixture
def write_project() -> Callable[[Path, dict[str, str]], Path]:
    """Write a project folder from {relative path: source}."""

    def write(folder: Path, files: dict[str, str]) -> Path:
        for relative, source in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return folder

    return write
