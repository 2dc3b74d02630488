"""Saving bundles to the artifact store, and reading them back verified.

Layout: every file is a content-addressed blob ``blobs/sha256/<hex>`` (shared by
all bundles that contain it); each manifest is ``bundles/<digest>.json``, whose
bytes hash to the digest. Nothing is trusted on the way back: every hash is
checked before a byte is used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from pydantic import ValidationError

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.code import check_code_modules, check_code_paths, code_modules, project_imports
from harbourmaster.bundle.formats import TrustPolicy, format_for
from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.manifest import BundleManifest, FileEntry
from harbourmaster.config import Settings
from harbourmaster.core.digest import sha256_bytes
from harbourmaster.errors import BundleIntegrityError, InvalidInputError, NotFoundError
from harbourmaster.store.artifacts import ArtifactStore

RESTORE_HINT = "restore it from a backup or register the version again"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def blob_key(sha256: str) -> str:
    """Artifact-store key of a content-addressed blob."""
    return f"blobs/sha256/{sha256}"


def manifest_key(digest: str) -> str:
    """Artifact-store key of a bundle's manifest."""
    return f"bundles/{digest}.json"


def _short(digest: str) -> str:
    return f"{digest[:12]}…"


def _corrupt(digest: str, path: str, expected: str, found: str) -> BundleIntegrityError:
    return BundleIntegrityError(
        f"bundle {_short(digest)} file {path} is corrupt or altered: expected sha256 {expected}, found {found}",
        RESTORE_HINT,
    )


def save_bundle(store: ArtifactStore, bundle: Bundle) -> str:
    """Write a bundle's blobs and manifest; return its digest. Idempotent.

    A blob already present is kept when its hash is right and rewritten when not,
    so saving a bundle again repairs a damaged copy.
    """
    digest = bundle.digest
    if set(bundle.files) != set(bundle.manifest.files):
        raise InvalidInputError(
            f"bundle {_short(digest)} files do not match its manifest",
            "build bundles with build_bundle",
        )
    for path, entry in bundle.manifest.files.items():
        data = bundle.files[path]
        found = sha256_bytes(data)
        if found != entry.sha256:
            raise _corrupt(digest, path, entry.sha256, found)
        key = blob_key(entry.sha256)
        if store.exists(key) and sha256_bytes(store.get_bytes(key)) == entry.sha256:
            continue
        store.put_bytes(key, data)
    key = manifest_key(digest)
    if not (store.exists(key) and sha256_bytes(store.get_bytes(key)) == digest):
        store.put_bytes(key, bundle.manifest.canonical_bytes())
    return digest


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise InvalidInputError(f"{digest!r} is not a bundle digest", "a digest is 64 lowercase hex characters")


def read_manifest(store: ArtifactStore, digest: str) -> BundleManifest:
    """A bundle's manifest, verified against its digest."""
    _check_digest(digest)
    key = manifest_key(digest)
    try:
        raw = store.get_bytes(key)
    except NotFoundError:
        raise BundleIntegrityError(
            f"bundle {_short(digest)} manifest {key} is missing from {store.url}",
            RESTORE_HINT,
        ) from None
    found = sha256_bytes(raw)
    if found != digest:
        raise _corrupt(digest, "manifest", digest, found)
    try:
        return BundleManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleIntegrityError(f"bundle {_short(digest)} manifest cannot be read: {exc}", RESTORE_HINT) from exc


def _read_file(store: ArtifactStore, digest: str, path: str, entry: FileEntry) -> bytes:
    try:
        data = store.get_bytes(blob_key(entry.sha256))
    except NotFoundError:
        raise BundleIntegrityError(
            f"bundle {_short(digest)} file {path} is missing (blob {blob_key(entry.sha256)} not in {store.url})",
            RESTORE_HINT,
        ) from None
    found = sha256_bytes(data)
    if found != entry.sha256 or len(data) != entry.size:
        raise _corrupt(digest, path, entry.sha256, found)
    return data


def read_bundle_file(store: ArtifactStore, digest: str, path: str) -> bytes | None:
    """One file of a bundle, verified against the manifest (itself verified); None if the bundle has no such file."""
    manifest = read_manifest(store, digest)
    entry = manifest.files.get(path)
    return None if entry is None else _read_file(store, digest, path, entry)


def read_bundle_files(store: ArtifactStore, digest: str) -> Bundle:
    """Read a bundle and verify the manifest and every file against their hashes."""
    manifest = read_manifest(store, digest)
    files = {path: _read_file(store, digest, path, entry) for path, entry in manifest.files.items()}
    return Bundle(manifest=manifest, files=files)


def _cached_code_ok(code_dir: Path, expected: dict[str, FileEntry]) -> bool:
    """Whether a materialised code folder holds exactly the manifest's files."""
    if not code_dir.is_dir():
        return False
    present: set[str] = set()
    for current, dirs, names in os.walk(code_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            present.add((Path(current) / name).relative_to(code_dir).as_posix())
    if present != set(expected):
        return False
    return all(sha256_bytes((code_dir / path).read_bytes()) == entry.sha256 for path, entry in expected.items())


def materialise_code(bundle: Bundle, cache_dir: Path) -> Path:
    """Write the bundle's code files to ``cache_dir/bundles/<digest>/code``, verified."""
    target = Path(cache_dir) / "bundles" / bundle.digest / "code"
    expected = bundle.manifest.code_files()
    if _cached_code_ok(target, expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".code-", dir=target.parent))
    for path in expected:
        destination = staging / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(bundle.files["code/" + path])
    if target.exists():
        stale = target.parent / f".stale-{uuid.uuid4().hex}"
        with suppress(OSError):  # another process may have moved it first
            target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        # Another process put its copy in place meanwhile; use it if it is right.
        shutil.rmtree(staging, ignore_errors=True)
        if not _cached_code_ok(target, expected):
            raise
    return target


def bundle_code_modules(manifest: BundleManifest) -> tuple[str, ...]:
    """The project modules a bundle's own code files define (never the manifest's claim)."""
    code_paths = manifest.code_files()
    check_code_paths(code_paths)
    return code_modules(code_paths)


def load_bundle(
    store: ArtifactStore,
    digest: str,
    settings: Settings,
    extra_trusted_types: Sequence[str] = (),
    code_modules: Sequence[str] | None = None,
) -> LoadedBundle:
    """Read, verify and load a bundle's model with its own project code.

    Loading runs the project's code (its modules are imported to rebuild the model).
    Trust comes from ``settings``, ``extra_trusted_types`` (the project's admin-set types)
    and the code modules derived from the bundle's verified files (checked against
    ``code_modules``, the registry's record, when given), never from the manifest's
    claims: a pickle bundle loads only when ``settings.trust_pickle`` is set, and a
    module named like the standard library or an installed package is refused.
    """
    bundle = read_bundle_files(store, digest)
    manifest = bundle.manifest
    fmt = format_for(manifest.format)
    if manifest.model_file != fmt.file_name:
        raise BundleIntegrityError(
            f"bundle {_short(digest)} names model file {manifest.model_file!r} for format {fmt.name!r}",
            RESTORE_HINT,
        )
    modules = bundle_code_modules(manifest)
    if code_modules is not None and tuple(sorted(code_modules)) != modules:
        raise BundleIntegrityError(
            f"bundle {_short(digest)} defines code modules {list(modules)}, "
            f"but the registry recorded {sorted(code_modules)}",
            RESTORE_HINT,
        )
    code_dir = materialise_code(bundle, settings.cache_dir)
    check_code_modules(modules)
    policy = TrustPolicy.from_settings(settings, extra_trusted_types=extra_trusted_types, code_modules=modules)
    with project_imports(code_dir, modules):
        model = fmt.load(bundle.files[manifest.model_file], policy)
    return LoadedBundle(digest, manifest, model)
