"""A small project for load tests (a steady classifier, optionally slow on every call), a replica of an
environment on loopback that has registered its address, and captured production requests."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.loopback import free_port
from tests.served import serve_champion
from tests.serving.helpers import serve_process, stop_process
from tests.serving.projects import _write, moody_frame

from harbourmaster.core.log_layout import LogLayout
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.capture import Captured, encode
from harbourmaster.store.prediction_log import prediction_key, table_bytes

STEADY = "steady"
OWNER = Actor.system("tests")
SLOW_SECONDS = 0.03  # every predict of the slow version sleeps this long

TOML = """
[project]
name = "steady"

[data]
source = "data/train.csv"
target = "y"

[pipeline]
train = "steady_model:train"
params = { delay = 0.0 }

[evaluation]
metrics = ["accuracy"]
holdout = 0.25
seed = 3
"""

MODEL = '''
"""A classifier that sleeps ``delay`` seconds on every call (a model too slow for its SLA)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class Steady(BaseEstimator, ClassifierMixin):
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def fit(self, features, target):
        self.model_ = LogisticRegression().fit(np.asarray(features, dtype=float), target)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, features):
        if self.delay:
            time.sleep(self.delay)
        return self.model_.predict(np.asarray(features, dtype=float))

    def predict_proba(self, features):
        if self.delay:
            time.sleep(self.delay)
        return self.model_.predict_proba(np.asarray(features, dtype=float))


def train(delay: float = 0.0) -> Steady:
    return Steady(delay=delay)
'''


def train_steady(platform: Platform, folder: Path) -> dict[str, int]:
    """``fast`` and ``slow`` (sleeps SLOW_SECONDS on every call) versions of the steady project."""
    actor = Actor.local_owner()
    project = _write(folder / STEADY, TOML, "steady_model", MODEL, moody_frame())
    fast = platform.training.train(actor, project).version.number
    (project / "harbourmaster.toml").write_text(TOML.replace("delay = 0.0", f"delay = {SLOW_SECONDS}"))
    slow = platform.training.train(actor, project).version.number
    return {"fast": fast, "slow": slow}


@contextmanager
def replica_serving(
    platform: Platform, home: Path, environment: str, number: int, timeout: float = 60
) -> Iterator[str]:
    """``harbourmaster serve`` of ``environment`` in a process of its own (not this one's GIL, which the
    load generator needs) on the store at ``home``; yields its URL once its heartbeat registered it serving
    ``number``; stopped gracefully (its prediction log flushed) on exit."""
    port = free_port()
    process = serve_process(home, port, environment=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_replica(platform, environment, url, number, timeout)
        yield url
    finally:
        stop_process(process)


def wait_for_replica(platform: Platform, environment: str, url: str, number: int, timeout: float = 60) -> None:
    """Until the replica at ``url`` has reported (heartbeat) serving ``number`` as champion."""
    deadline = time.monotonic() + timeout
    while not any(
        info.address == url and (info.loaded.get(STEADY) or {}).get("champion", {}).get("version") == number
        for info in platform.replicas.list(OWNER, environment)
    ):
        assert time.monotonic() < deadline, f"the replica of {environment} at {url} did not report v{number}"
        time.sleep(0.1)


def admit(platform: Platform, number: int, environments: tuple[str, ...] = ("dev", "test")) -> None:
    """Make ``number`` the champion of each of ``environments`` in turn, the way the gates allow: deployed in
    the first, served there by a replica, promoted to the next."""
    platform.deployments.deploy(OWNER, STEADY, number, environments[0])
    for before, after in itertools.pairwise(environments):
        serve_champion(platform, STEADY, before)
        platform.promotions.promote(OWNER, STEADY, number, after)


def capture(platform: Platform, environment: str, number: int, records: list[dict[str, Any]]) -> None:
    """``records`` as requests ``number`` answered in ``environment`` a minute ago, written to its prediction
    log the way a replica's capture writer writes them (typed columns)."""
    with platform.db.reader() as session:
        row = platform.registry.version_row(session, STEADY, number)
        layout = LogLayout.from_schemas(number, row.input_schema, row.output_schema)
    stamp = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1_000_000)
    entries = [
        Captured(stamp + i, f"prod-{i}", STEADY, number, "champion", None, 200, 1.0, [record], [1], None)
        for i, record in enumerate(records)
    ]
    for (project, day, version), table in encode(entries, environment, "r1", {(STEADY, number): layout}).items():
        name = hashlib.sha256(f"{environment}{number}".encode()).hexdigest()[:16]
        platform.artifacts.put_bytes(prediction_key(environment, project, day, name, version), table_bytes(table))


def logged_inputs(platform: Platform, environment: str, number: int) -> list[dict[str, Any]]:
    """The inputs ``number`` answered in ``environment`` (its prediction log)."""
    from harbourmaster.store.prediction_log import PredictionLog

    frame = PredictionLog(platform.artifacts).window(
        environment, STEADY, version=number, columns={"x1": "DOUBLE", "x2": "DOUBLE"}
    )
    return frame[["x1", "x2"]].to_dict(orient="records")
