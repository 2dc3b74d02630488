"""The reference sample a new bundle keeps, and the project's own drift settings."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from harbourmaster.bundle.builder import REFERENCE_SAMPLE_FILE
from harbourmaster.bundle.storage import read_bundle_file
from harbourmaster.core.drift import PREDICTION, DriftMethod
from harbourmaster.errors import BundleIntegrityError
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from monitoring.helpers import OWNER, PROJECT, current_frame, fitted, log_rows, register_and_deploy, training_frame


def _bundle(sample_rows: int):
    frame, target = training_frame(1500)
    return package_version(
        fitted(frame, target),
        features=frame,
        target=target,
        metrics={},
        lineage={},
        created_by="t",
        sensitive=["email"],
        reference_sample_rows=sample_rows,
    )


def test_sample_is_bounded_reproducible_and_withholds_sensitive_columns() -> None:
    first, second = _bundle(1000), _bundle(1000)
    data = first.files[REFERENCE_SAMPLE_FILE]
    assert data == second.files[REFERENCE_SAMPLE_FILE]  # the same draw every time
    assert first.manifest.files[REFERENCE_SAMPLE_FILE].size == len(data)  # hashed like every file
    sample = pd.read_parquet(io.BytesIO(data))
    assert len(sample) == 1000
    assert "email" not in sample.columns
    assert list(sample.columns) == ["income", "age", "score", "region", "member", PREDICTION]
    frame, _ = training_frame(1500)
    assert set(sample["income"]).issubset(set(frame["income"]))  # real training rows
    assert REFERENCE_SAMPLE_FILE not in _bundle(0).files
    small = pd.read_parquet(io.BytesIO(_bundle(5000).files[REFERENCE_SAMPLE_FILE]))
    assert len(small) == 1500  # fewer training rows than asked: all of them


def test_project_settings_apply_and_a_tampered_sample_is_refused(platform: Platform) -> None:
    drift = {"drift_share": 0.2, "features": {"age": {"method": "psi", "threshold": 0.5}}}
    version = register_and_deploy(platform, drift=drift)
    log_rows(platform, current_frame(500, shift=1.0), version=version)
    report = platform.drift.report(OWNER, PROJECT, "dev")  # default window from the settings: 1d
    assert report.window == "1d" and report.drift_share == 0.2 and report.drifted
    assert {f.feature: f.method for f in report.features}["age"] is DriftMethod.PSI
    override = platform.drift.report(OWNER, PROJECT, "dev", options={"drift_share": 0.9})
    assert override.drift_share == 0.9 and not override.drifted

    digest = platform.registry.get_version(OWNER, PROJECT, version).digest
    entry = platform.registry.read_bundle(OWNER, digest).manifest.files[REFERENCE_SAMPLE_FILE]
    platform.artifacts.put_bytes(f"blobs/sha256/{entry.sha256}", b"not the sample")
    with pytest.raises(BundleIntegrityError, match=r"reference/sample\.parquet is corrupt"):
        read_bundle_file(platform.artifacts, digest, REFERENCE_SAMPLE_FILE)
    with pytest.raises(BundleIntegrityError):
        platform.drift.report(OWNER, PROJECT, "dev")
