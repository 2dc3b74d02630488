"""Build, save and load a skops pipeline: what was trained is what runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from harbourmaster.bundle import (
    BundleManifest,
    LoadedBundle,
    format_for,
    load_bundle,
    read_bundle_files,
    save_bundle,
)
from harbourmaster.errors import InvalidInputError


def test_skops_pipeline_round_trip(cancer, cancer_pipeline, store, settings, make_bundle):
    features, _ = cancer
    bundle = make_bundle(cancer_pipeline, features)

    digest = save_bundle(store, bundle)
    loaded = load_bundle(store, digest, settings)

    assert isinstance(loaded, LoadedBundle)
    assert loaded.digest == digest == bundle.digest
    np.testing.assert_array_equal(loaded.predict(features), cancer_pipeline.predict(features))
    np.testing.assert_array_equal(loaded.predict_proba(features), cancer_pipeline.predict_proba(features))
    np.testing.assert_array_equal(loaded.classes, [0, 1])
    assert loaded.manifest.format == "skops"
    assert loaded.manifest.model_file == "model.skops"


def test_columns_are_selected_in_schema_order(cancer, cancer_pipeline, store, settings, make_bundle):
    features, _ = cancer
    digest = save_bundle(store, make_bundle(cancer_pipeline, features))
    loaded = load_bundle(store, digest, settings)

    shuffled = features[list(reversed(features.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(loaded.predict(shuffled), cancer_pipeline.predict(features))
    with pytest.raises(InvalidInputError, match="mean radius"):
        loaded.predict(features.drop(columns=["mean radius"]))


def test_layout_is_content_addressed_and_save_is_idempotent(cancer, cancer_pipeline, store, make_bundle):
    features, _ = cancer
    bundle = make_bundle(cancer_pipeline, features, code_files={"features.py": b"X = 1\n"})

    digest = save_bundle(store, bundle)
    keys = store.list()
    assert save_bundle(store, bundle) == digest
    assert store.list() == keys

    manifest_bytes = store.get_bytes(f"bundles/{digest}.json")
    assert hashlib.sha256(manifest_bytes).hexdigest() == digest
    for path, entry in bundle.manifest.files.items():
        blob = store.get_bytes(f"blobs/sha256/{entry.sha256}")
        assert blob == bundle.files[path]
        assert entry.size == len(blob)
    assert set(bundle.manifest.files) == {"model.skops", "code/features.py"}
    assert bundle.manifest.code_modules == ["features"]

    again = read_bundle_files(store, digest)
    assert again.manifest == bundle.manifest
    assert again.files == bundle.files


def test_manifest_digest_is_canonical(cancer, cancer_pipeline, make_bundle):
    features, _ = cancer
    bundle = make_bundle(cancer_pipeline, features)
    manifest = bundle.manifest

    reparsed = BundleManifest.model_validate(json.loads(json.dumps(manifest.model_dump())))
    assert reparsed.digest() == manifest.digest() == bundle.digest
    changed = manifest.model_copy(update={"metrics": {"accuracy": 0.5}})
    assert changed.digest() != manifest.digest()


def test_metadata_must_be_json_safe(cancer, cancer_pipeline, make_bundle):
    features, _ = cancer
    with pytest.raises(InvalidInputError, match="finite"):
        make_bundle(cancer_pipeline, features, metrics={"auc": float("nan")})
    # A missing value in the reference row is stored as JSON null.
    bundle = make_bundle(cancer_pipeline, features, reference_row={"x": float("nan")})
    stored = BundleManifest.model_validate_json(bundle.manifest.canonical_bytes())
    assert stored.reference_row == {"x": None}
    with pytest.raises(InvalidInputError, match="JSON-safe"):
        make_bundle(cancer_pipeline, features, lineage={"bad": object()})
    with pytest.raises(InvalidInputError, match="safe relative"):
        make_bundle(cancer_pipeline, features, code_files={"../evil.py": b""})


def test_unknown_format_lists_known_ones():
    with pytest.raises(InvalidInputError) as caught:
        format_for("joblib")
    assert "onnx, pickle, skops" in str(caught.value)


def test_bad_digest_is_rejected(store, settings):
    with pytest.raises(InvalidInputError):
        load_bundle(store, "../../etc/passwd", settings)
