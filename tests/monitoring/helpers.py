"""A small deployed version and a prediction log written in the replicas' own layout, for drift tests;
replicas' traffic samples for SLA tests; promtool for the Prometheus-rule tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from harbourmaster.core.declared_schema import parse_declarations
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts
from harbourmaster.services.actors import Actor
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from harbourmaster.store import traffic_samples
from harbourmaster.store.prediction_log import write_predictions

PROJECT = "loans"
OWNER = Actor.system("tests")
LEVELS = ["a", "b", "c", "d"]


def training_frame(rows: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50.0, 10.0, rows),
            "age": rng.normal(40.0, 12.0, rows),
            "score": rng.uniform(0.0, 1.0, rows),
            "region": rng.choice(LEVELS, rows, p=[0.4, 0.3, 0.2, 0.1]),
            "member": rng.random(rows) < 0.3,
            "email": [f"user{i}@example.com" for i in range(rows)],
        }
    )
    target = (frame["income"] + rng.normal(0, 5, rows) > 50).astype(int)
    return frame, target


def fitted(frame: pd.DataFrame, target: pd.Series) -> Pipeline:
    columns = ColumnTransformer(
        [("region", OneHotEncoder(handle_unknown="ignore"), ["region"]), ("numbers", "passthrough", ["income", "age"])]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))]).fit(frame, target)


def register_and_deploy(
    platform: Platform,
    *,
    sample_rows: int = 5000,
    rows: int = 3000,
    environment: str = "dev",
    drift: dict[str, object] | None = None,
    quality: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
) -> int:
    """Register a version of PROJECT (email withheld) and make it the champion in ``environment``."""
    frame, target = training_frame(rows)
    bundle = package_version(
        fitted(frame, target),
        features=frame,
        target=target,
        metrics=metrics or {},
        lineage={},
        created_by=OWNER.name,
        sensitive=["email"],
        reference_sample_rows=sample_rows,
        # The pipeline reads region, income and age; the other columns are monitored all the same.
        schema=parse_declarations({name: {"role": "feature"} for name in ("score", "member", "email")}),
    )
    monitoring = {key: value for key, value in (("drift", drift), ("quality", quality)) if value is not None}
    settings = {"monitoring": monitoring} if monitoring else None
    number = platform.registry.register_bundle(OWNER, PROJECT, bundle, project_settings=settings).number
    platform.deployments.deploy(OWNER, PROJECT, number, environment)
    return number


def current_frame(rows: int, *, shift: float = 0.0, seed: int = 1) -> pd.DataFrame:
    """Production inputs: income shifted by ``shift`` standard deviations, region re-weighted when shifted."""
    frame, _ = training_frame(rows, seed)
    frame["income"] = frame["income"] + shift * 10.0
    if shift:
        rng = np.random.default_rng(seed + 7)
        frame["region"] = rng.choice(LEVELS, rows, p=[0.1, 0.2, 0.3, 0.4])
    return frame


def log_rows(
    platform: Platform,
    frame: pd.DataFrame,
    *,
    version: int,
    environment: str = "dev",
    outputs: list[object] | None = None,
    ts: datetime | None = None,
    path: str = "champion",
    probabilities: list[dict[str, float]] | None = None,
    first: int = 0,
) -> None:
    """Write ``frame`` as answered requests to the prediction log (inputs and outputs as JSON text); row i
    is request ``req-{(first + i) // 10}``, row ``(first + i) % 10``."""
    ts = ts or datetime.now(UTC) - timedelta(minutes=5)
    records = frame.replace({np.nan: None}).to_dict(orient="records")
    outputs = outputs if outputs is not None else [1] * len(records)
    rows = [
        {
            "request_id": f"req-{(first + i) // 10}",
            "row": (first + i) % 10,
            "ts": ts,
            "environment": environment,
            "project": PROJECT,
            "version": version,
            "path": path,
            "reason": None,
            "status": 200,
            "latency_ms": 1.0,
            "inputs": json.dumps(record),
            "output": json.dumps(output),
            "probabilities": json.dumps(probabilities[i]) if probabilities else None,
            "shadow_version": None,
            "shadow_output": None,
            "replica": "r1",
        }
        for i, (record, output) in enumerate(zip(records, outputs, strict=True))
    ]
    write_predictions(platform.artifacts, rows)


def log_typed_rows(
    platform: Platform,
    frame: pd.DataFrame,
    *,
    version: int,
    environment: str = "dev",
    outputs: list[object] | None = None,
    ts: datetime | None = None,
    prefix: str = "typed",
) -> list[str]:
    """Write ``frame`` as answered requests in typed columns, as a replica's capture writer does."""
    from harbourmaster.core.log_layout import LogLayout
    from harbourmaster.serving.capture import Captured, encode
    from harbourmaster.store.prediction_log import prediction_key, table_bytes

    with platform.db.reader() as session:
        row = platform.registry.version_row(session, PROJECT, version)
        layout = LogLayout.from_schemas(version, row.input_schema, row.output_schema)
    ts = ts or datetime.now(UTC) - timedelta(minutes=5)
    records = frame.replace({np.nan: None}).to_dict(orient="records")
    outputs = outputs if outputs is not None else [1] * len(records)
    stamp = int(ts.timestamp() * 1_000_000)
    entries = [
        Captured(stamp + i, f"{prefix}-{i}", PROJECT, version, "champion", None, 200, 1.0, [record], [output], None)
        for i, (record, output) in enumerate(zip(records, outputs, strict=True))
    ]
    keys = []
    for (project, day, number), table in encode(entries, environment, "r1", {(PROJECT, version): layout}).items():
        key = prediction_key(environment, project, day, hashlib.sha256(prefix.encode()).hexdigest()[:16], number)
        platform.artifacts.put_bytes(key, table_bytes(table))
        keys.append(key)
    return keys


def _fast(total: float) -> tuple[float, ...]:
    return tuple(0.0 if bound < 0.005 else total for bound in LATENCY_BUCKETS)  # all within 5 ms


def store_burst(platform: Platform, now: datetime) -> None:
    """7 h of one replica's samples, one a minute: 582 answers and, in the last hour only, 18 errors a minute."""
    started = now - timedelta(minutes=421)
    answered = errors = 0.0
    with platform.db.transaction() as session:
        for minute in range(420, -1, -1):
            if minute < 420:
                answered += 582
                errors += 18 if minute < 60 else 0
            counts = Counts(answered + errors, errors, 0.0, answered + errors, 0.0, _fast(answered + errors))
            traffic_samples.add(session, "r1", "dev", started, now - timedelta(minutes=minute), {PROJECT: counts})


def promtool() -> str:
    """promtool's path; skips (on a laptop) or fails (CI=true) when Debian's prometheus package is missing."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (apt-get install prometheus; scripts/test installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return found
