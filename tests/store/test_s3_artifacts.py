"""Versions in an S3 bucket (moto's standalone server, a real HTTP S3 endpoint).

The platform is configured the way an operator would: HARBOURMASTER_ARTIFACTS_URL
and HARBOURMASTER_S3_ENDPOINT_URL; the bucket is inspected and tampered with
through boto3, behind the platform's back.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from harbourmaster.bundle.code import project_imports
from harbourmaster.bundle.storage import blob_key, manifest_key
from harbourmaster.config import Settings
from harbourmaster.errors import BundleIntegrityError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.artifacts import ArtifactStore
from loopback import free_port

pytestmark = pytest.mark.slow

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

ACTOR = Actor.local_owner()
PROJECT = "breast-cancer"
PREFIX = "hm"
STARTUP_SECONDS = 30


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free local port, for the whole module."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"moto server exited with {server.returncode}: {log.read_text()[-2000:]}")
            try:
                httpx.get(endpoint, timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server did not answer on {endpoint} within {STARTUP_SECONDS}s")
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A fresh bucket (one per test) and a boto3 client on it, with dummy credentials."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    name = f"hm-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=name)
    return client, name


def _settings(home: Path, bucket_name: str, endpoint: str) -> Settings:
    return Settings.from_env(
        {
            "HARBOURMASTER_HOME": str(home),
            "HARBOURMASTER_ARTIFACTS_URL": f"s3://{bucket_name}/{PREFIX}",
            "HARBOURMASTER_S3_ENDPOINT_URL": endpoint,
        }
    )


@pytest.fixture
def s3_platform(bucket: tuple[Any, str], s3_endpoint: str, tmp_path: Path) -> Iterator[Platform]:
    instance = Platform(_settings(tmp_path / "home", bucket[1], s3_endpoint))
    yield instance
    instance.close()


def _bucket_keys(client: Any, name: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=name)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _hand_fitted(project_dir: Path) -> tuple[Any, pd.DataFrame]:
    """The demo pipeline fitted on the same training split as the project file asks for."""
    frame = pd.read_csv(project_dir / "data" / "train.csv")
    features, target = frame.drop(columns=["malignant"]), frame["malignant"]
    x_train, _, y_train, _ = train_test_split(features, target, test_size=0.25, random_state=7, stratify=target)
    with project_imports(project_dir, ("features", "model")):
        prepare = importlib.import_module("features").prepare
        model = importlib.import_module("model").train(C=0.05)
        pipeline = Pipeline([("prepare", FunctionTransformer(prepare, validate=False)), ("model", model)])
        return pipeline.fit(x_train, y_train), features


def test_settings_pass_the_endpoint_to_s3fs(s3_platform: Platform, s3_endpoint: str) -> None:
    assert s3_platform.settings.storage_options == {"endpoint_url": s3_endpoint}
    assert type(s3_platform.artifacts.filesystem).__name__ == "S3FileSystem"
    assert s3_platform.artifacts.filesystem.client_kwargs.get("endpoint_url", s3_endpoint) == s3_endpoint
    s3_platform.artifacts.check()  # a real write and read through the endpoint


def test_train_store_in_s3_and_load_back(
    s3_platform: Platform, bucket: tuple[Any, str], s3_endpoint: str, demo_project: Path, tmp_path: Path
) -> None:
    client, name = bucket
    version = s3_platform.training.train(ACTOR, demo_project).version

    manifest = s3_platform.artifacts.get_bytes(manifest_key(version.digest))
    stored = s3_platform.registry.load_version(ACTOR, PROJECT, 1).manifest
    expected = sorted(
        [f"{PREFIX}/{manifest_key(version.digest)}"]
        + [f"{PREFIX}/{blob_key(entry.sha256)}" for entry in stored.files.values()]
    )
    assert _bucket_keys(client, name) == expected
    assert client.get_object(Bucket=name, Key=f"{PREFIX}/{manifest_key(version.digest)}")["Body"].read() == manifest
    assert set(stored.files) == {
        "model.skops",
        "code/features.py",
        "code/model.py",
        "code/harbourmaster.toml",
        "reference/sample.parquet",
    }

    # Another replica: its own home and cache, sharing only the bucket (and here the database file).
    replica_settings = _settings(tmp_path / "replica", name, s3_endpoint)
    from dataclasses import replace

    replica = Platform(replace(replica_settings, database_url=s3_platform.settings.database_url))
    try:
        loaded = replica.registry.load_version(ACTOR, PROJECT, "latest")
    finally:
        replica.close()
    by_hand, features = _hand_fitted(demo_project)
    np.testing.assert_allclose(loaded.predict_proba(features), by_hand.predict_proba(features), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(features), by_hand.predict(features))


@pytest.mark.parametrize("path", ["model.skops", "code/features.py"])
def test_a_blob_tampered_in_the_bucket_is_refused_naming_the_file(
    path: str, s3_platform: Platform, bucket: tuple[Any, str], demo_project: Path
) -> None:
    client, name = bucket
    version = s3_platform.training.train(ACTOR, demo_project).version
    manifest = s3_platform.registry.load_version(ACTOR, PROJECT, 1).manifest
    key = f"{PREFIX}/{blob_key(manifest.files[path].sha256)}"
    original = client.get_object(Bucket=name, Key=key)["Body"].read()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    client.put_object(Bucket=name, Key=key, Body=bytes(tampered))

    with pytest.raises(BundleIntegrityError) as caught:
        s3_platform.registry.load_version(ACTOR, PROJECT, 1)

    error = caught.value
    assert f"file {path} is corrupt or altered" in error.message
    assert version.digest[:12] in error.message
    assert error.hint and "register the version again" in error.hint


def test_a_tampered_manifest_in_the_bucket_is_refused(
    s3_platform: Platform, bucket: tuple[Any, str], demo_project: Path
) -> None:
    client, name = bucket
    version = s3_platform.training.train(ACTOR, demo_project).version
    key = f"{PREFIX}/{manifest_key(version.digest)}"
    body = client.get_object(Bucket=name, Key=key)["Body"].read()
    client.put_object(Bucket=name, Key=key, Body=body.replace(b'"accuracy":', b'"accuracy": '))

    with pytest.raises(BundleIntegrityError, match="manifest"):
        s3_platform.registry.load_version(ACTOR, PROJECT, 1)


def test_retraining_repairs_a_shared_blob_deleted_behind_the_platforms_back(
    s3_platform: Platform, bucket: tuple[Any, str], demo_project: Path
) -> None:
    """This process's view of the bucket must not go stale when another process changes it."""
    client, name = bucket
    s3_platform.training.train(ACTOR, demo_project)
    manifest = s3_platform.registry.load_version(ACTOR, PROJECT, 1).manifest
    code_key = blob_key(manifest.files["code/features.py"].sha256)  # shared by every version of the project
    assert code_key in s3_platform.artifacts.list()  # a listing, as a clean-up job or a health page does
    client.delete_object(Bucket=name, Key=f"{PREFIX}/{code_key}")

    assert not s3_platform.artifacts.exists(code_key)
    with pytest.raises(BundleIntegrityError, match=r"code/features\.py is missing"):
        s3_platform.registry.load_version(ACTOR, PROJECT, 1)

    second = s3_platform.training.train(ACTOR, demo_project).version  # writes the missing blob again

    assert second.number == 2
    assert f"{PREFIX}/{code_key}" in _bucket_keys(client, name)
    assert s3_platform.registry.load_version(ACTOR, PROJECT, 1).manifest.files == manifest.files


def test_s3_store_operations_and_missing_keys(bucket: tuple[Any, str], s3_endpoint: str) -> None:
    client, name = bucket
    store = ArtifactStore(f"s3://{name}/{PREFIX}", {"endpoint_url": s3_endpoint})

    assert store.list() == []
    store.put_bytes("bundles/a.json", b"a")
    store.put_bytes("blobs/sha256/00", b"\x00" * 1000)
    assert store.get_bytes("blobs/sha256/00") == b"\x00" * 1000
    assert store.list() == ["blobs/sha256/00", "bundles/a.json"]
    assert store.list("bundles") == ["bundles/a.json"]
    assert _bucket_keys(client, name) == [f"{PREFIX}/blobs/sha256/00", f"{PREFIX}/bundles/a.json"]

    # Written by another process: seen at once, although this store listed the prefix before.
    client.put_object(Bucket=name, Key=f"{PREFIX}/bundles/b.json", Body=b"b")
    assert store.exists("bundles/b.json")
    assert store.list("bundles") == ["bundles/a.json", "bundles/b.json"]
    client.delete_object(Bucket=name, Key=f"{PREFIX}/bundles/a.json")
    assert not store.exists("bundles/a.json")

    store.delete("bundles/b.json")
    assert not store.exists("bundles/b.json")
    assert _bucket_keys(client, name) == [f"{PREFIX}/blobs/sha256/00"]
    with pytest.raises(NotFoundError) as caught:
        store.get_bytes("bundles/b.json")
    assert f"s3://{name}/{PREFIX}" in caught.value.message
    assert caught.value.hint and "HARBOURMASTER_ARTIFACTS_URL" in caught.value.hint
