"""ONNX bundles run on onnxruntime and agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.bundle import load_bundle, save_bundle
from harbourmaster.bundle.onnx_model import OnnxModel
from harbourmaster.errors import InvalidInputError

skl2onnx = pytest.importorskip("skl2onnx")


@pytest.fixture(scope="module")
def numpy_pipeline(cancer) -> Pipeline:
    features, target = cancer
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    return pipeline.fit(features.to_numpy(), target)


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_onnx_bundle_matches_sklearn(zipmap, cancer, numpy_pipeline, store, settings, make_bundle):
    features, _ = cancer
    options = None if zipmap else {id(numpy_pipeline.steps[-1][1]): {"zipmap": False}}
    onnx_model = skl2onnx.to_onnx(numpy_pipeline, features.to_numpy()[:1].astype(np.float32), options=options)
    digest = save_bundle(store, make_bundle(onnx_model, features, format="onnx"))
    loaded = load_bundle(store, digest, settings)

    assert isinstance(loaded.model, OnnxModel)
    assert loaded.manifest.model_file == "model.onnx"
    values = features.to_numpy()
    np.testing.assert_array_equal(loaded.predict(features), numpy_pipeline.predict(values))
    np.testing.assert_allclose(loaded.predict_proba(features), numpy_pipeline.predict_proba(values), atol=1e-5)
    np.testing.assert_array_equal(loaded.classes, [0, 1])


def test_onnx_inputs_by_column_name():
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": np.arange(20, dtype=float), "b": np.arange(20) % 3})
    target = 2 * frame["a"] + frame["b"]
    pipeline = Pipeline(
        [
            ("cols", ColumnTransformer([("pass", "passthrough", ["a", "b"])])),
            ("model", LinearRegression()),
        ]
    ).fit(frame, target)
    onnx_model = skl2onnx.convert_sklearn(
        pipeline,
        initial_types=[("a", FloatTensorType([None, 1])), ("b", Int64TensorType([None, 1]))],
    )
    model = OnnxModel(onnx_model.SerializeToString())
    assert model.input_names == ["a", "b"]
    assert model.predict_proba(frame) is None
    np.testing.assert_allclose(model.predict(frame), pipeline.predict(frame), atol=1e-4)
    with pytest.raises(InvalidInputError, match="b"):
        model.predict(frame[["a"]])


def test_onnx_dump_refuses_other_objects(numpy_pipeline, cancer, make_bundle):
    features, _ = cancer
    with pytest.raises(InvalidInputError, match="ModelProto"):
        make_bundle(numpy_pipeline, features, format="onnx")
