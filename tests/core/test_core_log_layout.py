"""The typed layout of a version's prediction-log rows, and the retention setting of a project file."""

from __future__ import annotations

import pytest

from harbourmaster.core.log_layout import LogLayout
from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.errors import ProjectFileError


def test_layout_types_each_column_from_the_schema() -> None:
    columns = [
        {"name": "n", "dtype": "integer"},
        {"name": "x", "dtype": "float"},
        {"name": "b", "dtype": "boolean"},
        {"name": "s", "dtype": "string"},
        {"name": "d", "dtype": "datetime"},
        {"name": "c", "dtype": "category", "categories": ["a", "b"]},
        {"name": "k", "dtype": "category", "categories": [1, 2]},
        {"name": "m", "dtype": "category", "categories": [1, "a"]},
        {"name": "u", "dtype": "category"},
    ]
    layout = LogLayout.from_schemas(
        4, {"columns": columns}, {"task": "classification", "classes": ["no", "yes"], "has_probabilities": True}
    )
    assert dict(layout.inputs) == {
        "n": "int64",
        "x": "float64",
        "b": "bool",
        "s": "string",
        "d": "string",
        "c": "string",
        "k": "int64",
        "m": "json",
        "u": "json",
    }
    assert layout.prediction == "string" and layout.classes == ("no", "yes")
    assert layout.describe()["version"] == 4
    regression = LogLayout.from_schemas(1, {"columns": []}, {"task": "regression", "dtype": "float"})
    assert regression.prediction == "float64" and regression.classes == ()
    no_proba = LogLayout.from_schemas(1, {}, {"task": "classification", "classes": [0, 1], "has_probabilities": False})
    assert no_proba.prediction == "int64" and no_proba.classes == ()


def test_project_file_retention_setting() -> None:
    base = {"project": {"name": "p"}, "data": {"source": "d.csv", "target": "y"}, "pipeline": {"train": "t:f"}}
    spec = parse_project_spec({**base, "monitoring": {"prediction_log": {"retention_days": 30}}}, "hm.toml")
    assert spec.monitoring.prediction_log == {"retention_days": 30}
    with pytest.raises(ProjectFileError, match=r"prediction_log.*retention_days"):
        parse_project_spec({**base, "monitoring": {"prediction_log": {"retention_days": 0}}}, "hm.toml")
    with pytest.raises(ProjectFileError, match=r"prediction_log.*keep"):
        parse_project_spec({**base, "monitoring": {"prediction_log": {"keep": 3}}}, "hm.toml")
