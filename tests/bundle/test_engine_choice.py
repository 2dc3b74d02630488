"""Which engine serves a version, and the scikit-learn fast path giving the pipeline's own answers.

Everything goes through registration (``Client.register``) and loading from the artifact store, as a
replica does; the engine is decided on the default install (skl2onnx is a regular dependency).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from harbourmaster.bundle.engine import library_only
from harbourmaster.bundle.predictor import Predictor
from harbourmaster.client import Client
from harbourmaster.config import Settings

FEATURES = textwrap.dedent(
    '''
    """A transformer of the project's own: a ratio of two named columns (needs a DataFrame)."""

    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin


    class Ratio(BaseEstimator, TransformerMixin):
        def fit(self, features, target=None):
            return self

        def transform(self, features):
            ratio = features["mean radius"] / (features["mean texture"] + 1.0)
            return np.column_stack([features.to_numpy(dtype=float), ratio.to_numpy()])
    '''
)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("code")
    (folder / "features.py").write_text(FEATURES)
    return folder


@pytest.fixture(scope="module")
def ratio_class(code_dir: Path) -> type:
    sys.path.insert(0, str(code_dir))
    try:
        import features  # the project's module, as training imports it
    finally:
        sys.path.remove(str(code_dir))
    return features.Ratio


def _colours() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = 400
    frame = pd.DataFrame(
        {
            "x1": rng.normal(0, 1, rows),
            "x2": rng.normal(5, 2, rows),
            "colour": rng.choice(["red", "green", "blue"], rows),
        }
    )
    frame["y"] = ((frame["x1"] + (frame["colour"] == "red") * 1.5 + rng.normal(0, 0.5, rows)) > 0.7).astype(int)
    return frame


def _register(hm: Client, project: str, pipeline: Any, frame: pd.DataFrame, target: str, **kwargs: Any) -> Any:
    pipeline.fit(frame.drop(columns=[target]), frame[target])
    detail = hm.register(project, pipeline, frame, target=target, metrics={"score": 1.0}, **kwargs)
    return detail, hm.load(project, "latest")


def test_engine_is_onnx_for_a_plain_pipeline_and_sklearn_with_the_reason_for_project_code(
    sqlite_settings: Settings, cancer: pd.DataFrame, code_dir: Path, ratio_class: type
) -> None:
    plain = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))])
    custom = Pipeline(
        [("ratio", ratio_class()), ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))]
    )
    with Client(settings=sqlite_settings) as hm:
        plain_detail, plain_bundle = _register(hm, "plain", plain, cancer, "target")
        custom_detail, custom_bundle = _register(hm, "custom", custom, cancer, "target", code_dir=code_dir)

    # recorded at registration ...
    assert plain_detail.lineage["serving"] == {"engine": "onnx", "reason": None}
    reason = "custom transformer features.Ratio has no ONNX converter"
    assert custom_detail.lineage["serving"] == {"engine": "sklearn", "reason": reason}
    # ... and the same decision when a replica loads the version
    plain_predictor, custom_predictor = Predictor(1, plain_bundle), Predictor(1, custom_bundle)
    assert (plain_predictor.engine, plain_predictor.engine_reason) == ("onnx", None)
    assert (custom_predictor.engine, custom_predictor.engine_reason) == ("sklearn", reason)
    assert custom_predictor.engine_info == {"engine": "sklearn", "reason": reason, "input": "frame", "calls": 1}
    # only library code may run on a replica's event loop (serving.lanes.InlineGate)
    assert plain_predictor.library_only and not custom_predictor.library_only

    # `harbourmaster show` says it, in text and in JSON
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(sqlite_settings.home), COLUMNS="200", NO_COLOR="1")

    def show(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "harbourmaster", "show", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "serving engine: onnx\n" in show("plain")
    assert f"serving engine: sklearn ({reason})" in show("custom")
    assert json.loads(show("custom", "--json"))["lineage"]["serving"]["reason"] == reason


def _far_from_the_mean(a: np.ndarray, b: np.ndarray) -> float:  # a metric of the project's own
    return float(np.abs(a - b).sum())


def test_library_only_means_no_project_code_anywhere_on_the_scoring_path(
    cancer: pd.DataFrame, ratio_class: type
) -> None:
    features, target = cancer.drop(columns=["target"]), cancer["target"]

    def fitted(*steps: Any) -> Pipeline:
        return Pipeline([(f"s{i}", step) for i, step in enumerate(steps)]).fit(features, target)

    assert library_only(fitted(StandardScaler(), LogisticRegression(max_iter=5000)))
    assert library_only(fitted(RandomForestClassifier(n_estimators=5, n_jobs=1, random_state=0)))
    assert not library_only(fitted(ratio_class(), LogisticRegression(max_iter=5000)))  # a custom step
    assert not library_only(fitted(FunctionTransformer(np.log1p), LogisticRegression(max_iter=5000)))
    assert not library_only(fitted(KNeighborsClassifier(metric=_far_from_the_mean)))  # a project function
    # worker threads: the calling thread's CPU time would not show the work
    assert not library_only(fitted(RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0)))


def _same_answers(predictor: Predictor, pipeline: Any, features: pd.DataFrame) -> None:
    records = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in features.to_dict("records")
    ]
    expected = np.asarray(pipeline.predict(features))
    proba_expected = pipeline.predict_proba(features) if hasattr(pipeline, "predict_proba") else None
    batches = [predictor.batch(records[:size]) for size in (1, 7, len(records))]  # 1 row, small and large
    if predictor.numeric:  # as a replica gives them: the validated (finite) matrix, not checked again
        batches += [predictor.batch(records[:size], features.to_numpy(np.float64)[:size]) for size in (1, 7)]
        assert batches[-1].finite and not batches[0].finite
    for batch in batches:
        size = len(batch)
        labels, proba = predictor.predict(batch)
        if expected.dtype.kind == "f":
            assert np.abs(labels - expected[:size]).max() <= 1e-9
        else:
            assert np.array_equal(labels, expected[:size])
        if proba_expected is None:
            assert proba is None
        else:
            assert proba is not None and np.abs(proba - proba_expected[:size]).max() <= 1e-9


@pytest.mark.parametrize(
    ("case", "input_kind", "calls"),
    [
        ("numeric", "matrix", 1),
        ("categorical", "frame", 1),
        ("custom transformer", "frame", 1),
        ("regression", "matrix", 1),
        ("random forest, 3 classes", "matrix", 1),
    ],
)
def test_sklearn_fast_path_gives_the_pipelines_answers(
    sqlite_settings: Settings,
    cancer: pd.DataFrame,
    code_dir: Path,
    ratio_class: type,
    case: str,
    input_kind: str,
    calls: int,
) -> None:
    kwargs: dict[str, Any] = {}
    if case == "numeric":
        frame, target = cancer, "target"
        pipeline: Any = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))])
    elif case == "categorical":
        frame, target = _colours(), "y"
        columns = ColumnTransformer(
            [("num", StandardScaler(), ["x1", "x2"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])]
        )
        pipeline = Pipeline([("columns", columns), ("model", LogisticRegression())])
    elif case == "custom transformer":
        frame, target, kwargs = cancer, "target", {"code_dir": code_dir}
        pipeline = Pipeline(
            [("ratio", ratio_class()), ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))]
        )
    elif case == "regression":
        frame, target = load_diabetes(as_frame=True).frame, "target"
        pipeline = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=0.5))])
    else:
        data = load_breast_cancer(as_frame=True)
        frame = data.frame.assign(target=pd.cut(data.frame["mean area"], 3, labels=False).astype(int))
        frame, target = frame.drop(columns=["mean area"]), "target"
        pipeline = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0)
    with Client(settings=sqlite_settings) as hm:
        _, bundle = _register(hm, "p", pipeline, frame, target, **kwargs)
    predictor = Predictor(1, bundle, use_onnx=False)  # scikit-learn, whatever ONNX would say
    predictor.warm()
    assert predictor.engine == "sklearn"
    info = predictor.engine_info
    assert (info["input"], info["calls"]) == (input_kind, calls)
    _same_answers(predictor, pipeline, frame.drop(columns=[target]).head(60))


@pytest.mark.slow
def test_a_replica_says_which_engine_serves_and_why(
    sqlite_settings: Settings, cancer: pd.DataFrame, code_dir: Path, ratio_class: type
) -> None:
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform
    from harbourmaster.serving.server import ServerThread

    custom = Pipeline(
        [("ratio", ratio_class()), ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))]
    )
    with Client(settings=sqlite_settings) as hm:
        _register(hm, "custom", custom, cancer, "target", code_dir=code_dir)
    platform = Platform(sqlite_settings)
    try:
        platform.deployments.deploy(Actor.local_owner(), "custom", 1, "dev")
        with ServerThread(platform, "dev") as server:
            deadline = time.monotonic() + 60
            while not httpx.get(f"{server.url}/v2/models/custom/ready", timeout=5).is_success:
                assert time.monotonic() < deadline, "the replica did not load the version"
                time.sleep(0.2)
            parameters = httpx.get(f"{server.url}/v2/models/custom", timeout=5).json()["parameters"]
            reason = "custom transformer features.Ratio has no ONNX converter"
            assert (parameters["engine"], parameters["engine_reason"]) == ("sklearn", reason)
            assert parameters["engine_details"] == {"engine": "sklearn", "reason": reason, "input": "frame", "calls": 1}
            features = cancer.drop(columns=["target"]).head(5)
            records = [{k: float(v) for k, v in r.items()} for r in features.to_dict("records")]
            answer = httpx.post(f"{server.url}/v1/projects/custom/predict", json={"records": records}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == custom.predict(features).tolist()
    finally:
        platform.close()
