"""XGBoost and LightGBM estimators: registered through the SDK, loaded without pickle in a fresh process,
served by a real replica on loopback, with the in-memory estimator's answers; a missing library is named.

Each library: a classifier on its own and a regressor behind a ``ColumnTransformer`` (scaled numbers,
one-hot colours) in a scikit-learn ``Pipeline``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from harbourmaster.bundle.libraries import LIBRARY_TYPES
from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import MissingLibraryError

ROWS = 300


def _data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(0, 1, ROWS),
            "x2": rng.normal(5, 2, ROWS),
            "x3": rng.uniform(-1, 1, ROWS),
            "colour": rng.choice(["red", "green", "blue"], ROWS),
        }
    )
    signal = frame["x1"] + 0.5 * frame["x3"] + (frame["colour"] == "red") * 1.2 + rng.normal(0, 0.3, ROWS)
    frame["label"] = np.digitize(signal, [-0.3, 0.8])  # three classes
    frame["amount"] = 2.0 * frame["x1"] - frame["x2"] + (frame["colour"] == "blue") * 3.0 + rng.normal(0, 0.5, ROWS)
    return frame


def _estimators(library: str) -> tuple[Any, Any]:
    """A classifier (numbers only) and a regressor pipeline (numbers and colours) of ``library``."""
    if library == "xgboost":
        xgboost = pytest.importorskip("xgboost")
        classifier = xgboost.XGBClassifier(n_estimators=15, max_depth=3, random_state=0, n_jobs=1)
        regressor = xgboost.XGBRegressor(n_estimators=15, max_depth=3, random_state=0, n_jobs=1)
    else:
        lightgbm = pytest.importorskip("lightgbm")
        classifier = lightgbm.LGBMClassifier(n_estimators=15, num_leaves=7, random_state=0, n_jobs=1, verbose=-1)
        regressor = lightgbm.LGBMRegressor(n_estimators=15, num_leaves=7, random_state=0, n_jobs=1, verbose=-1)
    columns = ColumnTransformer(
        [("numbers", StandardScaler(), ["x1", "x2", "x3"]), ("colours", OneHotEncoder(), ["colour"])]
    )
    return classifier, Pipeline([("columns", columns), ("model", regressor)])


def _records(features: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in features.to_dict("records")
    ]


LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from harbourmaster.client import Client

    project, path = sys.argv[1], sys.argv[2]
    features = pd.DataFrame.from_records(json.load(open(path)))
    with Client() as hm:
        loaded = hm.load(project)
    model = loaded.model
    answer = {"module": type(model).__module__, "predictions": model.predict(features).tolist()}
    if hasattr(model, "predict_proba"):
        answer["probabilities"] = model.predict_proba(features).tolist()
    print(json.dumps(answer))
    """
)


def _load_in_a_fresh_process(settings: Settings, project: str, features: pd.DataFrame, tmp: Any) -> dict[str, Any]:
    path = tmp / f"{project}-records.json"
    path.write_text(json.dumps(_records(features)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(settings.home), PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, project, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_estimators_register_load_without_pickle_and_serve_the_same_answers(
    library: str, sqlite_settings: Settings, tmp_path: Any
) -> None:
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform
    from harbourmaster.serving.server import ServerThread

    frame = _data()
    features = frame[["x1", "x2", "x3", "colour"]]
    numbers = features[["x1", "x2", "x3"]]
    classifier, regressor = _estimators(library)
    classifier.fit(numbers, frame["label"])
    regressor.fit(features, frame["amount"])
    held_out = _data(seed=11)  # rows the estimators never saw
    new_features, new_numbers = held_out[["x1", "x2", "x3", "colour"]].head(40), held_out[["x1", "x2", "x3"]].head(40)

    with Client(settings=sqlite_settings) as hm:
        for project, model, training in (
            ("classes", classifier, numbers.assign(label=frame["label"])),
            ("amounts", regressor, features.assign(amount=frame["amount"])),
        ):
            target = "label" if project == "classes" else "amount"
            detail = hm.register(project, model, training, target=target, metrics={"score": 1.0})
            assert detail.format == "skops"
            # Every type the model file names is trusted by the platform itself: no admin step, no pickle.
            statuses = {t.name: t.status for t in hm.inspect(project).referenced_types}
            named = {name for name in statuses if name.split(".", 1)[0] == library}
            assert named and named <= LIBRARY_TYPES
            assert {statuses[name] for name in named} == {"platform"}
            assert "untrusted" not in statuses.values()
            serving = detail.lineage["serving"]
            if project == "classes":  # numbers only: the ONNX copy was made and checked for exactness
                assert serving["engine"] == "onnx" or serving["reason"].startswith("ONNX answers differ"), serving
            else:
                assert serving == {
                    "engine": "sklearn",
                    "reason": "non-numeric input columns (colour): the ONNX path takes numbers only",
                }

    # A fresh process loads each version from the store and answers exactly like the estimator in memory.
    loaded = _load_in_a_fresh_process(sqlite_settings, "classes", new_numbers, tmp_path)
    assert loaded["module"].startswith(f"{library}.")
    assert loaded["predictions"] == classifier.predict(new_numbers).tolist()
    assert loaded["probabilities"] == classifier.predict_proba(new_numbers).tolist()
    loaded = _load_in_a_fresh_process(sqlite_settings, "amounts", new_features, tmp_path)
    assert loaded["module"] == "sklearn.pipeline"
    assert loaded["predictions"] == regressor.predict(new_features).tolist()

    # A replica on loopback serves both, with the same answers.
    platform = Platform(sqlite_settings)
    try:
        for project in ("classes", "amounts"):
            platform.deployments.deploy(Actor.local_owner(), project, 1, "dev")
        with ServerThread(platform, "dev") as server, httpx.Client(base_url=server.url, timeout=30) as http:
            deadline = time.monotonic() + 60
            while not all(http.get(f"/v2/models/{p}/ready").is_success for p in ("classes", "amounts")):
                assert time.monotonic() < deadline, "the replica did not load both versions"
                time.sleep(0.2)
            served = http.post("/v1/projects/classes/predict", json={"records": _records(new_numbers)})
            assert served.status_code == 200, served.text
            classes = [str(c) for c in classifier.classes_]
            expected_proba = classifier.predict_proba(new_numbers).tolist()
            assert served.json()["predictions"] == classifier.predict(new_numbers).tolist()
            assert [[row[c] for c in classes] for row in served.json()["probabilities"]] == expected_proba
            served = http.post("/v1/projects/amounts/predict", json={"records": _records(new_features)})
            assert served.status_code == 200, served.text
            assert served.json()["predictions"] == regressor.predict(new_features).tolist()
            engine = http.get("/v2/models/classes").json()["parameters"]["engine"]
            assert engine in {"onnx", "sklearn"}
    finally:
        platform.close()


def test_a_version_whose_library_is_not_installed_says_which_package_to_install(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    xgboost = pytest.importorskip("xgboost")
    frame = _data()
    numbers = frame[["x1", "x2", "x3"]]
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(numbers, frame["label"])
    with Client(settings=sqlite_settings) as hm:
        hm.register("classes", model, numbers.assign(label=frame["label"]), target="label", metrics={"score": 1.0})
        # As where xgboost is not installed: importing it fails.
        for name in [m for m in sys.modules if m == "xgboost" or m.startswith("xgboost.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "xgboost", None)
        with pytest.raises(MissingLibraryError) as refused:
            hm.load("classes")
    assert refused.value.message == "model.skops needs the Python package xgboost, which is not installed here"
    assert 'pip install "harbourmaster[boosting]"' in (refused.value.hint or "")
