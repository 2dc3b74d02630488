"""Lineage parameters depend on what was fitted, never on where it sits in memory."""

from __future__ import annotations

import json

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from harbourmaster.services.packaging import describe_params


def double(frame):
    return frame * 2


class Opaque:
    """An object with the default repr (``<... object at 0x...>``)."""


def pipeline() -> Pipeline:
    return Pipeline(
        [
            ("prepare", FunctionTransformer(double)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=0.5, class_weight={0: 1.0, 1: 2.0})),
        ]
    )


def test_two_identical_pipelines_are_described_identically_without_addresses() -> None:
    first = describe_params(pipeline().get_params(deep=False))
    second = describe_params(pipeline().get_params(deep=False))
    assert first == second
    text = json.dumps(first)  # plain JSON
    assert "0x" not in text and "<function" not in text
    prepare, scale, model = (step for _name, step in first["steps"])
    assert prepare["params"]["func"] == f"{__name__}:double"
    assert scale["estimator"] == "sklearn.preprocessing._data:StandardScaler"
    assert model["params"]["C"] == 0.5 and model["params"]["class_weight"] == {"0": 1.0, "1": 2.0}


def test_other_objects_callables_and_classes_are_named() -> None:
    described = describe_params({"thing": Opaque(), "hook": len, "kind": Opaque, "nested": [{"f": double}]})
    assert described == {
        "thing": f"{__name__}:Opaque",
        "hook": "builtins:len",
        "kind": f"{__name__}:Opaque",
        "nested": [{"f": f"{__name__}:double"}],
    }
