"""Signed audit anchors, kept outside the database in write-once storage.

A local folder (the default, in the control plane's home): each anchor is a new
file, created exclusively and made read-only; an existing one is never replaced.
On an object store (``s3://...``) an anchor is only written where no object has
that key yet; turn on S3 Object Lock (compliance mode) on the bucket so that no
one, the platform included, can delete or overwrite it during retention.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

SUFFIX = ".json"


def anchor_name(anchor: dict[str, Any]) -> str:
    return f"{int(anchor['seq']):012d}-{str(anchor['hash'])[:16]}{SUFFIX}"


class AnchorStore:
    """Write-once storage of anchor documents (JSON), one per anchored chain head."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self._fs, self._root = url_to_fs(self.url, **dict(storage_options or {}))
        self._local = isinstance(self._fs, LocalFileSystem)

    def write(self, anchor: dict[str, Any]) -> str | None:
        """Store ``anchor``; its name, or None when that head is anchored already."""
        name = anchor_name(anchor)
        data = json.dumps(anchor, sort_keys=True).encode()
        if self._local:
            return name if _create_read_only(Path(self._root), name, data) else None
        path = f"{self._root}/{name}"
        self._fs.invalidate_cache(self._root)
        if self._fs.exists(path):
            return None
        self._fs.pipe_file(path, data)
        return name

    def read_all(self) -> list[dict[str, Any]]:
        """Every anchor, oldest seq first, each with its ``_name``; unreadable ones are kept as such."""
        if self._local:
            root = Path(self._root)
            if not root.exists():
                return []  # nothing anchored yet
            if not root.is_dir():  # a file where the folder must be is an error, never "no anchors"
                raise NotADirectoryError(f"the audit anchors' location {root} is not a folder")
        if not self._local:
            self._fs.invalidate_cache(self._root)
            if not self._fs.exists(self._root):
                return []
        anchors = []
        for path in sorted(self._fs.ls(self._root, detail=False)):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            try:
                document = json.loads(self._fs.cat_file(path))
                if not isinstance(document, dict):
                    raise ValueError("not an object")
            except ValueError:
                document = {"seq": None, "at": None}
            anchors.append({**document, "_name": name})
        return anchors


def _create_read_only(folder: Path, name: str, data: bytes) -> bool:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = folder / f".tmp-{uuid.uuid4().hex}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, folder / name)  # exclusive: an anchor, once there, is never replaced
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
