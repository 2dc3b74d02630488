"""The manifest holds no raw training record: the reference row is synthetic, and sensitive
columns are profiled without their values (issue 7 item 7)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from harbourmaster.client import Client
from harbourmaster.core.declared_schema import parse_declarations
from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.packaging import package_version


def _data(rows: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": rng.normal(50_000, 9_000, rows).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1]),
            "email": [f"person{i}@example.org" for i in range(rows)],
        }
    )
    return frame, pd.Series((frame["age"] > 50).astype(int), name="churned")


def _pipeline() -> Pipeline:
    numbers = ColumnTransformer([("n", "passthrough", ["age", "income"])])
    return Pipeline([("cols", numbers), ("model", LogisticRegression(max_iter=500))])


def test_the_reference_row_is_synthetic_and_sensitive_columns_keep_no_values() -> None:
    features, target = _data()
    bundle = package_version(
        _pipeline().fit(features, target),
        features=features,
        target=target,
        metrics={},
        lineage={},
        created_by="tests",
        sensitive=["email", "income"],
        # the pipeline reads only age and income; declared features are profiled all the same
        schema=parse_declarations({"plan": {"role": "feature"}, "email": {"role": "feature"}}),
    )
    manifest = bundle.manifest
    row = manifest.reference_row
    records = features.to_dict(orient="records")
    assert row not in [{k: v for k, v in r.items()} for r in records]
    assert row["age"] == int(np.median(features["age"])) and isinstance(row["age"], int)
    assert row["plan"] == "basic"  # the most frequent category
    assert row["email"] is None and row["income"] is None  # sensitive: nothing derived from values

    text = manifest.model_dump_json()
    assert not any(email in text for email in features["email"])
    assert not any(json.dumps(float(v)) in text for v in features["income"])
    profile = manifest.profile["features"]
    for name in ("email", "income"):
        assert profile[name]["sensitive"] is True
        assert profile[name]["count"] == len(features) and profile[name]["null_fraction"] == 0.0
        assert not profile[name].get("frequencies") and profile[name].get("minimum") is None
        assert not profile[name].get("quantiles") and not profile[name].get("bin_edges")
    schema = {c["name"]: c for c in manifest.input_schema["columns"]}
    assert schema["email"]["categories"] is None and schema["income"]["minimum"] is None
    assert schema["plan"]["categories"] == ["basic", "plus", "pro"]  # not sensitive: kept


def test_sensitive_columns_from_the_sdk_and_the_project_file(isolated_env) -> None:
    features, target = _data()
    with Client() as client:
        version = client.register(
            "churn",
            _pipeline().fit(features, target),
            features.assign(churned=target),
            "churned",
            metrics={"accuracy": 0.9},
            sensitive=["email"],
        )
        schema = {c["name"]: c for c in version.input_schema["columns"]}
        assert schema["email"]["categories"] is None  # withheld from the schema readable by any viewer
    with pytest.raises(InvalidInputError, match="not in the training data"):
        package_version(
            _pipeline().fit(features, target),
            features=features,
            target=target,
            metrics={},
            lineage={},
            created_by="tests",
            sensitive=["nope"],
        )
    text = '[project]\nname = "churn"\n[data]\nsource = "d.csv"\ntarget = "churned"\nsensitive = ["email"]\n'
    spec = parse_project_spec(tomllib.loads(text + '[pipeline]\ntrain = "train:train"\n'), "harbourmaster.toml")
    assert spec.data.sensitive == ["email"]
