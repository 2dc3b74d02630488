"""The local artifact store: keys in, bytes out, no half-written files ever visible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harbourmaster.errors import NotFoundError
from harbourmaster.store.artifacts import ArtifactStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def store(root: Path) -> ArtifactStore:
    return ArtifactStore(str(root))


def _all_files(root: Path) -> list[str]:
    return sorted(
        (Path(current) / name).relative_to(root).as_posix() for current, _, names in os.walk(root) for name in names
    )


def test_the_root_folder_is_created(root: Path, store: ArtifactStore) -> None:
    assert root.is_dir()
    assert store.list() == []


def test_put_then_get_returns_the_same_bytes(store: ArtifactStore, root: Path) -> None:
    payload = bytes(range(256)) * 100
    store.put_bytes("blobs/sha256/abc", payload)

    assert store.get_bytes("blobs/sha256/abc") == payload
    assert (root / "blobs" / "sha256" / "abc").read_bytes() == payload
    assert store.uri("blobs/sha256/abc") == f"{root}/blobs/sha256/abc"


def test_put_overwrites_an_existing_key(store: ArtifactStore) -> None:
    store.put_bytes("bundles/one.json", b"first")
    store.put_bytes("bundles/one.json", b"second")

    assert store.get_bytes("bundles/one.json") == b"second"
    assert store.list("bundles") == ["bundles/one.json"]


def test_exists_follows_put_and_delete(store: ArtifactStore) -> None:
    assert not store.exists("a/b")
    store.put_bytes("a/b", b"x")
    assert store.exists("a/b")

    store.delete("a/b")
    assert not store.exists("a/b")
    store.delete("a/b")  # deleting a missing key is a no-op
    with pytest.raises(NotFoundError):
        store.get_bytes("a/b")


def test_list_returns_sorted_keys_relative_to_the_root(store: ArtifactStore) -> None:
    for key in ["blobs/sha256/ff", "bundles/2.json", "blobs/sha256/00", "bundles/1.json", "top"]:
        store.put_bytes(key, key.encode())

    assert store.list() == ["blobs/sha256/00", "blobs/sha256/ff", "bundles/1.json", "bundles/2.json", "top"]
    assert store.list("bundles") == ["bundles/1.json", "bundles/2.json"]
    assert store.list("blobs/sha256") == ["blobs/sha256/00", "blobs/sha256/ff"]
    assert store.list("nothing-here") == []


def test_successful_writes_leave_no_temporary_files(store: ArtifactStore, root: Path) -> None:
    keys = [f"blobs/sha256/{index:02x}" for index in range(20)] + ["bundles/d.json"]
    for key in keys:
        store.put_bytes(key, b"data " + key.encode())

    assert _all_files(root) == sorted(keys)


def test_a_failed_write_leaves_neither_the_key_nor_a_temporary_file(store: ArtifactStore, root: Path) -> None:
    store.put_bytes("bundles/kept.json", b"kept")

    with pytest.raises(TypeError):
        store.put_bytes("bundles/broken.json", "not bytes")  # type: ignore[arg-type]

    assert not store.exists("bundles/broken.json")
    assert _all_files(root) == ["bundles/kept.json"]


def test_a_crashed_writers_temporary_file_is_not_listed_as_a_key(store: ArtifactStore, root: Path) -> None:
    store.put_bytes("bundles/real.json", b"real")
    # What a writer that died between writing and moving into place leaves behind:
    # the store's own temporary name for that key.
    store.filesystem.pipe_file(f"{root}/bundles/.tmp-0123456789abcdef-half.json", b"half")

    assert store.list("bundles") == ["bundles/real.json"]
    assert not store.exists("bundles/half.json")


def test_a_missing_key_is_not_found_with_a_hint(store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError) as caught:
        store.get_bytes("bundles/missing.json")

    error = caught.value
    assert "bundles/missing.json" in error.message
    assert store.url in error.message
    assert error.hint and "HARBOURMASTER_ARTIFACTS_URL" in error.hint


def test_check_round_trips_and_cleans_up(store: ArtifactStore, root: Path) -> None:
    store.check()

    assert _all_files(root) == []
