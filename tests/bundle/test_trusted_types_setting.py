"""The trusted-types setting does what the refusal says: the command in its hint lets the same ``register``
call succeed and the version load in a fresh process, and the platform-wide setting on the control plane
is honoured by a scientist's SDK and a remote replica that do not have it in their own environment."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from tests.conftest import make_settings
from tests.dataplane.helpers import ControlPlaneServer

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import UntrustedContentError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.control_plane import RemoteControlPlane
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread

PROJECT = "negated"
TYPE = "_operator.neg"  # not trusted by default, not forbidden: trusting it is the admin's call


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 120), "b": rng.normal(2, 1, 120)})
    return frame.assign(y=(frame["a"] - 0.3 * frame["b"] > -0.5).astype(int))


@pytest.fixture(scope="module")
def negating(data: pd.DataFrame) -> Pipeline:
    pipeline = Pipeline([("neg", FunctionTransformer(operator.neg)), ("model", LogisticRegression())])
    return pipeline.fit(data[["a", "b"]], data["y"])


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(home), PYTHONPATH=os.pathsep.join(sys.path), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


@pytest.mark.slow
def test_the_command_in_the_refusal_lets_the_same_register_call_succeed(
    sqlite_settings: Settings, data: pd.DataFrame, negating: Pipeline
) -> None:
    with Client(settings=sqlite_settings) as hm:
        with pytest.raises(UntrustedContentError) as refused:
            hm.register(PROJECT, negating, data, target="y", metrics={"score": 1.0})
        assert hm.projects() == []  # a refused registration changes nothing

    hint = refused.value.hint or ""
    command = hint.split("with: ", 1)[1].split(" (", 1)[0]
    assert command == f"harbourmaster trust {PROJECT} --add-type {TYPE}"
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *command.split()[1:]],
        env=_env(sqlite_settings.home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert TYPE in done.stdout

    with Client(settings=sqlite_settings) as hm:
        detail = hm.register(PROJECT, negating, data, target="y", metrics={"score": 1.0})
        assert (detail.number, detail.format) == (1, "skops")
        statuses = {t.name: t.status for t in hm.inspect(PROJECT).referenced_types}
        assert statuses[TYPE] == "project"

    # Loaded from the store in a fresh process: the same answers as the pipeline in memory.
    script = (
        "import json, pandas as pd\nfrom harbourmaster.client import Client\n"
        f"frame = pd.DataFrame({data[['a', 'b']].head(20).to_dict('list')!r})\n"
        f"with Client() as hm:\n    print(json.dumps(hm.load({PROJECT!r}).model.predict_proba(frame).tolist()))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], env=_env(sqlite_settings.home), capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    expected = negating.predict_proba(data[["a", "b"]].head(20)).tolist()
    assert json.loads(loaded.stdout.strip()) == expected


@pytest.mark.slow
def test_a_remote_replica_honours_the_control_planes_trusted_types(
    tmp_path: Path, data: pd.DataFrame, negating: Pipeline
) -> None:
    # The control plane trusts the type platform-wide, as the hint's second option says; neither the
    # scientist's machine nor the replica's has the setting.
    settings = Settings.from_env({"HARBOURMASTER_HOME": str(tmp_path / "control"), "HARBOURMASTER_TRUSTED_TYPES": TYPE})
    platform = Platform(settings)
    control = ControlPlaneServer(platform).start()
    try:
        system = Actor.system("tests")
        platform.identity.create_user(system, "dana", ["data-scientist"])
        scientist = platform.identity.create_token(system, "dana", "tests").secret
        with Client(url=control.url, token=scientist, settings=make_settings(tmp_path / "laptop")) as hm:
            detail = hm.register(PROJECT, negating, data, target="y", metrics={"score": 1.0})  # a new project
            assert detail.number == 1
        platform.deployments.deploy(Actor.local_owner(), PROJECT, 1, "dev")
        token = platform.dataplane.create_credential(system, "dev", "replica").secret
        replica_settings = make_settings(tmp_path / "replica")  # its own environment does not trust the type
        assert TYPE not in replica_settings.trusted_type_prefixes
        remote = RemoteControlPlane(control.url, token, "dev", replica_settings)
        options = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.3, capture_flush_seconds=0.3)
        with ServerThread(remote, "dev", options) as replica, httpx.Client(base_url=replica.url, timeout=30) as http:
            deadline = time.monotonic() + 60
            while not http.get(f"/v2/models/{PROJECT}/ready").is_success:
                assert time.monotonic() < deadline, f"the replica did not load the version: {replica.replica.loaded()}"
                time.sleep(0.2)
            records = data[["a", "b"]].head(10).to_dict("records")
            answer = http.post(f"/v1/projects/{PROJECT}/predict", json={"records": records})
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == negating.predict(data[["a", "b"]].head(10)).tolist()
        remote.close()
    finally:
        control.stop()
        platform.close()


MODEL_PY = """
import operator

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer


def train():
    return Pipeline([("neg", FunctionTransformer(operator.neg)), ("model", LogisticRegression())])
"""


def test_harbourmaster_train_honours_the_type_an_admin_trusted(
    sqlite_settings: Settings, data: pd.DataFrame, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    data.to_csv(folder / "train.csv", index=False)
    (folder / "model.py").write_text(MODEL_PY)
    (folder / "harbourmaster.toml").write_text(
        f'[project]\nname = "{PROJECT}"\n\n[data]\nsource = "train.csv"\ntarget = "y"\n\n'
        '[pipeline]\ntrain = "model:train"\n\n[evaluation]\nmin_rows = 20  # the fixture has 120 rows\n'
    )
    with Client(settings=sqlite_settings) as hm:
        with pytest.raises(UntrustedContentError) as refused:
            hm.train(folder)
        assert f"harbourmaster trust {PROJECT} --add-type {TYPE}" in (refused.value.hint or "")
        hm.trust(PROJECT, add=[TYPE])
        result = hm.train(folder)
        assert result.version.number == 1
        loaded = hm.load(PROJECT)
    assert loaded.model.steps[0][1].func is operator.neg  # the trusted function, loaded back from skops
    assert (loaded.model.predict(data[["a", "b"]]) == data["y"]).mean() > 0.8
