"""Every byte of a stored bundle is verified before it is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harbourmaster.bundle import load_bundle, read_bundle_files, save_bundle
from harbourmaster.errors import BundleIntegrityError

FEATURES = "def double(x):\n    return x * 2\n"


@pytest.fixture
def saved(cancer, cancer_pipeline, store, make_bundle):
    features, _ = cancer
    bundle = make_bundle(cancer_pipeline, features, code_files={"features.py": FEATURES.encode()})
    return bundle, save_bundle(store, bundle)


def _blob(store, bundle, path: str) -> Path:
    return Path(store.path(f"blobs/sha256/{bundle.manifest.files[path].sha256}"))


def test_flipped_byte_in_a_blob_names_the_file(saved, store, settings):
    bundle, digest = saved
    blob = _blob(store, bundle, "code/features.py")
    data = bytearray(blob.read_bytes())
    data[0] ^= 0x01
    blob.write_bytes(bytes(data))

    with pytest.raises(BundleIntegrityError) as caught:
        load_bundle(store, digest, settings)
    error = caught.value
    assert "code/features.py" in error.message
    assert "corrupt or altered" in error.message
    assert digest[:12] in error.message
    assert "register the version again" in (error.hint or "")


def test_altered_manifest_is_refused(saved, store):
    _, digest = saved
    key = Path(store.path(f"bundles/{digest}.json"))
    key.write_bytes(key.read_bytes().replace(b'"accuracy":0.95', b'"accuracy":0.99'))

    with pytest.raises(BundleIntegrityError, match="manifest"):
        read_bundle_files(store, digest)


def test_missing_blob_names_the_file(saved, store):
    bundle, digest = saved
    _blob(store, bundle, "model.skops").unlink()

    with pytest.raises(BundleIntegrityError, match=r"model\.skops is missing"):
        read_bundle_files(store, digest)


def test_missing_manifest_is_an_integrity_error(saved, store):
    _, digest = saved
    Path(store.path(f"bundles/{digest}.json")).unlink()
    with pytest.raises(BundleIntegrityError, match="manifest"):
        read_bundle_files(store, digest)


def test_saving_again_repairs_a_damaged_blob(saved, store, settings):
    bundle, digest = saved
    _blob(store, bundle, "model.skops").write_bytes(b"garbage")
    assert save_bundle(store, bundle) == digest
    assert read_bundle_files(store, digest).files == bundle.files


def test_altered_cached_code_is_rewritten(saved, cancer, cancer_pipeline, store, settings):
    _, digest = saved
    features, _ = cancer
    load_bundle(store, digest, settings)
    code_dir = settings.cache_dir / "bundles" / digest / "code"
    (code_dir / "features.py").write_text("raise SystemExit('tampered')\n")
    (code_dir / "numpy.py").write_text("raise SystemExit('shadowing')\n")

    loaded = load_bundle(store, digest, settings)
    assert (code_dir / "features.py").read_text() == FEATURES
    assert not (code_dir / "numpy.py").exists()
    np.testing.assert_array_equal(loaded.predict(features), cancer_pipeline.predict(features))
