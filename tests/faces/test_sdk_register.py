"""``Client().register(...)``: pipelines fitted in a notebook become versions (embedded, both backends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import EntrypointError, InvalidInputError, UntrustedContentError

TARGET = "malignant"


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows), each with the target column."""
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": TARGET})
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame[TARGET])
    return train, test


@pytest.fixture(scope="module")
def fitted(data) -> Pipeline:
    train, _ = data
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])
    return pipeline.fit(train.drop(columns=[TARGET]), train[TARGET])


@pytest.fixture
def hm(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings) as client:
        yield client


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[TARGET])


def test_register_with_metric_values_then_with_metric_names(hm, data, fitted):
    train, test = data
    first = hm.register("cancer", fitted, train, target=TARGET, metrics={"accuracy": 0.97, "auc": 0.99})
    assert first.project == "cancer"
    assert first.number == 1
    assert first.format == "skops"
    assert first.metrics == {"accuracy": 0.97, "auc": 0.99}
    assert [c["name"] for c in first.input_schema["columns"]] == list(features(train).columns)
    assert first.output_schema["task"] == "classification"
    assert first.output_schema["classes"] == [0, 1]
    assert first.output_schema["has_probabilities"] is True
    assert first.lineage["source"] == "notebook"
    assert first.lineage["target"] == TARGET
    assert first.lineage["data"]["rows"] == len(train)
    assert first.lineage["parent_version"] is None

    second = hm.register(
        "cancer",
        fitted,
        train,
        target=TARGET,
        metrics=["accuracy", "roc_auc"],
        eval_data=test,
        description="evaluated here",
        parameters={"max_iter": 2000},
    )
    assert second.number == 2
    expected_accuracy = float((fitted.predict(features(test)) == test[TARGET]).mean())
    assert second.metrics["accuracy"] == pytest.approx(expected_accuracy)
    assert 0.9 < second.metrics["roc_auc"] <= 1.0
    assert second.lineage["parent_version"] == 1
    assert second.lineage["parameters"] == {"max_iter": 2000}
    assert second.description == "evaluated here"
    assert second.digest != first.digest  # different metrics and lineage: a different bundle

    loaded = hm.load("cancer", 2)
    sample = features(test).head(20)
    np.testing.assert_array_equal(loaded.predict(sample), fitted.predict(sample))
    np.testing.assert_allclose(loaded.predict_proba(sample), fitted.predict_proba(sample))
    # Columns are picked by name from the input schema, whatever order they come in.
    np.testing.assert_array_equal(loaded.predict(sample[sample.columns[::-1]]), fitted.predict(sample))


CUSTOM_TRANSFORMER = """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin


    class LogRatio(BaseEstimator, TransformerMixin):
        \"\"\"Adds log(worst / mean) of every measurement: a project's own transformer.\"\"\"

        def fit(self, frame, target=None):
            self.pairs_ = [c[len("mean ") :] for c in frame.columns if c.startswith("mean ")]
            return self

        def transform(self, frame):
            ratios = [np.log((frame["worst " + p] + 1e-3) / (frame["mean " + p] + 1e-3)) for p in self.pairs_]
            return np.column_stack([frame.to_numpy(dtype=float), *ratios])
"""

FRESH_PROCESS = """
import json, sys
import pandas as pd
from harbourmaster.client import Client

rows = pd.read_json(sys.argv[1], orient="records")
with Client() as hm:
    model = hm.load("custom", 1)
    print(json.dumps({"proba": model.predict_proba(rows)[:, 1].tolist()}))
"""


def test_register_with_code_dir_loads_in_a_fresh_process(hm, data, settings, tmp_path, monkeypatch):
    train, test = data
    code_dir = tmp_path / "my_project"
    (code_dir / "hm_notebook_steps").mkdir(parents=True)
    (code_dir / "hm_notebook_steps" / "__init__.py").write_text("")
    (code_dir / "hm_notebook_steps" / "ratios.py").write_text(textwrap.dedent(CUSTOM_TRANSFORMER))
    monkeypatch.syspath_prepend(str(code_dir))  # as a notebook started in the project folder would
    from hm_notebook_steps.ratios import LogRatio

    pipeline = Pipeline([("ratios", LogRatio()), ("scale", StandardScaler()), ("model", LogisticRegression())])
    pipeline.set_params(model__max_iter=3000).fit(features(train), train[TARGET])
    detail = hm.register(
        "custom", pipeline, train, target=TARGET, metrics=["accuracy"], eval_data=test, code_dir=code_dir
    )
    assert detail.metrics["accuracy"] > 0.9
    assert detail.lineage["code"]["kind"] == "files"

    sample = features(test).head(10)
    expected = pipeline.predict_proba(sample)[:, 1]
    np.testing.assert_allclose(hm.load("custom", 1).predict_proba(sample)[:, 1], expected)

    # A new interpreter, elsewhere, that has never seen code_dir: the code travels in the bundle.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rows = elsewhere / "rows.json"
    rows.write_text(sample.to_json(orient="records", double_precision=15))
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(settings.home)
    env["HARBOURMASTER_DATABASE_URL"] = settings.database_url
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(rows)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["proba"], expected, rtol=0, atol=1e-12)


def test_register_refuses_bad_input(hm, data, fitted):
    train, _ = data
    unfitted = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    with pytest.raises(EntrypointError) as raised:
        hm.register("bad", unfitted, train, target=TARGET, metrics={"accuracy": 1.0})
    assert "cannot predict" in raised.value.message
    assert "fitted" in raised.value.hint

    with pytest.raises(InvalidInputError, match="'churned' is not in the data") as raised:
        hm.register("bad", fitted, train, target="churned")
    assert raised.value.hint

    with pytest.raises(InvalidInputError, match="not a pandas DataFrame") as raised:
        hm.register("bad", fitted, features(train).to_numpy(), target=TARGET)
    assert "DataFrame" in raised.value.hint

    with pytest.raises(InvalidInputError, match="held-out data") as raised:
        hm.register("bad", fitted, train, target=TARGET, metrics=["accuracy"])
    assert "eval_data" in raised.value.hint

    with pytest.raises(InvalidInputError, match="not a valid project name"):
        hm.register("Bad Name", fitted, train, target=TARGET)

    with pytest.raises(UntrustedContentError) as raised:
        hm.register("bad", fitted, train, target=TARGET, format="pickle")
    assert "trust_pickle=True" in raised.value.hint
    assert "HARBOURMASTER_TRUST_PICKLE=1" in raised.value.hint

    # Every refusal happened before anything was written.
    assert hm.projects() == []


def test_the_pickle_hint_names_an_opt_in_that_works(settings, data, fitted):
    """Doing what the pickle refusal's hint says registers and loads the version."""
    from dataclasses import replace

    train, test = data
    with Client(settings=replace(settings, trust_pickle=True)) as trusting:
        detail = trusting.register("pickled", fitted, train, target=TARGET, format="pickle", trust_pickle=True)
        assert detail.format == "pickle"
        loaded = trusting.load("pickled", detail.number)
        assert list(loaded.predict(features(test))) == list(fitted.predict(features(test)))


def test_register_onnx_model_predicts_like_sklearn(hm, data, fitted):
    skl2onnx = pytest.importorskip("skl2onnx")
    train, test = data
    values = features(train).to_numpy(dtype=np.float32)
    options = {id(fitted.steps[-1][1]): {"zipmap": False}}
    proto = skl2onnx.to_onnx(fitted, values[:1], options=options)

    detail = hm.register("cancer-onnx", proto, train, target=TARGET, metrics={"accuracy": 0.96}, format="onnx")
    assert detail.format == "onnx"
    assert detail.output_schema["task"] == "classification"
    assert detail.output_schema["classes"] == [0, 1]
    assert detail.output_schema["dtype"] == "integer"

    loaded = hm.load("cancer-onnx", 1)
    assert loaded.manifest.model_file == "model.onnx"
    sample = features(test)
    np.testing.assert_array_equal(loaded.predict(sample), fitted.predict(sample))
    np.testing.assert_allclose(loaded.predict_proba(sample), fitted.predict_proba(sample), atol=1e-5)

    # The serialized bytes work as well as the proto, and bundle identically.
    again = hm.register(
        "cancer-onnx", proto.SerializeToString(), train, target=TARGET, metrics={"accuracy": 0.96}, format="onnx"
    )
    assert again.number == 2
    np.testing.assert_array_equal(hm.load("cancer-onnx", 2).predict(sample), fitted.predict(sample))

    # A scikit-learn pipeline is not an ONNX graph: a clear error, not a crash.
    with pytest.raises(InvalidInputError, match="ModelProto"):
        hm.register("cancer-onnx", fitted, train, target=TARGET, format="onnx")
