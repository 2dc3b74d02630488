"""The artifact store: immutable blobs under keys, on any fsspec filesystem.

A plain local folder by default; ``s3://bucket/prefix`` (or gs://, az://, ...)
in production. Writes go to a temporary key first and are then moved into
place where the filesystem allows it, so a reader never sees half a file.
"""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from harbourmaster.errors import NotFoundError


class ArtifactStore:
    """Key/value byte storage rooted at one fsspec URL."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem
        self._fs, self._root = url_to_fs(self.url, **options)
        self._local = isinstance(self._fs, LocalFileSystem)
        if self._local:
            self._fs.makedirs(self._root, exist_ok=True)

    @property
    def filesystem(self) -> fsspec.AbstractFileSystem:
        return self._fs

    def path(self, key: str) -> str:
        """The filesystem path (without protocol) of a key."""
        return f"{self._root}/{key.lstrip('/')}"

    def uri(self, key: str) -> str:
        """The full URL of a key, for readers such as DuckDB."""
        return f"{self.url}/{key.lstrip('/')}"

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if self._local:
            parent, name = target.rsplit("/", 1)
            self._fs.makedirs(parent, exist_ok=True)
            # A hidden name that list() skips, so a crashed write never shows up as a key.
            temporary = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}"
            try:
                self._fs.pipe_file(temporary, data)
                self._fs.mv(temporary, target)
            except BaseException:
                if self._fs.exists(temporary):
                    self._fs.rm(temporary)
                raise
        else:
            # Object stores make a PUT visible atomically.
            self._fs.pipe_file(target, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._fs.cat_file(self.path(key))
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"artifact {key!r} is missing from the artifact store {self.url}",
                "check HARBOURMASTER_ARTIFACTS_URL points at the store the version was saved to",
            ) from exc

    def _fresh(self, path: str) -> str:
        """``path``, with fsspec's listing cache dropped for it on remote stores.

        Other writers (replicas, a clean-up job) change an object store behind our
        back; an answer from s3fs' cache of an earlier listing would be stale.
        """
        if not self._local:
            self._fs.invalidate_cache(path)
        return path

    def exists(self, key: str) -> bool:
        return bool(self._fs.exists(self._fresh(self.path(key))))

    def delete(self, key: str) -> None:
        if self.exists(key):
            self._fs.rm(self.path(key))

    def list(self, prefix: str = "") -> list[str]:
        """Keys under a prefix, relative to the store root, sorted."""
        base = self._fresh(self.path(prefix).rstrip("/"))
        if not self._fs.exists(base):
            return []
        root_length = len(self._root.rstrip("/")) + 1
        found = self._fs.find(base)
        return sorted(path[root_length:] for path in found if "/.tmp-" not in path)

    def disk_usage(self) -> tuple[int, int] | None:
        """Free and total bytes of the disk holding a local store; None where it cannot be known (object stores)."""
        if not self._local:
            return None
        usage = shutil.disk_usage(self._root)
        return usage.free, usage.total

    def check(self) -> None:
        """Raise if the store cannot be written and read back (for health checks)."""
        key = f"_health/{uuid.uuid4().hex}"
        self.put_bytes(key, b"ok")
        if self.get_bytes(key) != b"ok":
            raise OSError(f"artifact store {self.url} returned different bytes")
        self.delete(key)
