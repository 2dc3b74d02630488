"""A local write-ahead spool for captured predictions: what was answered survives a crash or a store outage.

One folder per environment in the replica's cache. Every process that writes owns
an id (a lock file ``<owner>.lock`` it holds an exclusive ``flock`` on while it
lives) and appends one JSON line per answered request to its live *segment*
``<owner>-<seq>.seg`` (the first line is a header naming the environment and the
replica). The capture writer *seals* the live segment at each flush (it starts a
new one), uploads the sealed segment's rows as one Parquet file per partition
whose key is derived from the segment's name, and then removes the segment.

Durability policy (group commit):

* every line is written with one ``write(2)`` before the answer is sent, so it
  survives the death of the process (SIGKILL, OOM kill, a crash): the kernel owns it;
* the live segment is ``fdatasync``-ed every ``fsync_seconds`` (0.2 s by default)
  by the writer thread and once more when sealed, so a crash of the *machine*
  loses at most that much.

Replay: a segment whose owner's lock can be taken belongs to a dead process;
any writer adopts and uploads it. Because a segment always becomes the same
Parquet keys with the same rows, uploading it twice (the killed process had
uploaded part of it) overwrites files instead of duplicating rows.

The spool is bounded (``max_bytes``); a full spool refuses lines, and the caller
counts them as dropped. Not thread-safe: callers serialise ``append`` and ``seal``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

try:  # POSIX; elsewhere no segment is ever adopted from another process (its rows wait for their owner)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("harbourmaster.serving.spool")

SUFFIX = ".seg"


@dataclass
class Segment:
    """One sealed (or adopted) segment file and what is known of it."""

    path: Path
    seq: int = 0  # this owner's sequence number (0: adopted from another owner)
    rows: int = 0  # answered rows it holds (a request without rows counts one)
    fd: int | None = None  # open until ``finish`` (sealed by the writer thread, synced outside the lock)

    def finish(self) -> None:
        """Sync and close a freshly sealed segment (the group commit of its last lines)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    @property
    def name(self) -> str:
        return self.path.name[: -len(SUFFIX)]


class SpoolFull(Exception):
    """The spool reached its byte limit (or the disk is full): the line was not written."""


class Spool:
    """Append-only segments of one owner in ``folder``; adoption of dead owners' segments."""

    def __init__(self, folder: Path, header: dict[str, Any], *, max_bytes: int = 2 << 30) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.owner = uuid.uuid4().hex[:16]
        self.max_bytes = max_bytes
        self._header = orjson.dumps(header) + b"\n"
        self._lock_fd = os.open(self.folder / f"{self.owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self.live_rows = 0
        self.bytes = 0  # bytes of this owner's segments still on disk (and of adopted ones)
        self._dirty = False

    # -- writing (request path) ------------------------------------------------------

    def append(self, line: bytes, rows: int) -> int:
        """Write one line (ending in a newline) to the live segment; its sequence number.

        Raises SpoolFull when the spool is at its limit or the disk refuses the write.
        """
        if self.bytes + len(line) > self.max_bytes:
            raise SpoolFull(f"spool at its limit of {self.max_bytes} bytes")
        fd = self._fd
        if fd is None:
            fd = self._open()
        try:
            os.write(fd, line)
        except OSError as exc:  # ENOSPC, EIO: the caller counts the rows as dropped
            raise SpoolFull(str(exc)) from exc
        self.bytes += len(line)
        self.live_rows += rows
        self._dirty = True
        return self._seq

    def _open(self) -> int:
        self._seq += 1
        self._path = self.folder / f"{self.owner}-{self._seq:09d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        os.write(self._fd, self._header)
        self.bytes += len(self._header)
        return self._fd

    @property
    def live_seq(self) -> int:
        """Sequence number of the live segment (lines appended from now on get at least this one)."""
        return self._seq if self._fd is not None else self._seq + 1

    # -- the writer thread ---------------------------------------------------------------

    def sync(self) -> None:
        """fdatasync the live segment if it changed (the group commit); safe beside ``append``, not ``seal``."""
        fd = self._fd
        if fd is not None and self._dirty:
            self._dirty = False
            os.fdatasync(fd)

    def seal(self) -> Segment | None:
        """Detach the live segment (lines appended from now on go to a new one); None when nothing was written.

        Cheap, so it can run under the caller's lock; call ``finish()`` on the result outside it.
        """
        if self._fd is None or self._path is None:
            return None
        segment = Segment(self._path, self._seq, self.live_rows, self._fd)
        self._fd, self._path, self.live_rows, self._dirty = None, None, 0, False
        return segment

    def remove(self, segment: Segment) -> None:
        """Forget a segment whose rows are in the prediction log."""
        with contextlib.suppress(FileNotFoundError):
            size = segment.path.stat().st_size
            segment.path.unlink()
            self.bytes = max(0, self.bytes - size)

    def adopt(self) -> list[Segment]:
        """Segments left by owners that are gone (a killed or crashed process), oldest first.

        Their lock files are removed; the segments are now this owner's to upload and remove.
        """
        adopted: list[Segment] = []
        if fcntl is None:
            return adopted
        for lock in sorted(self.folder.glob("*.lock")):
            owner = lock.name[: -len(".lock")]
            if owner == self.owner:
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process adopted it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                paths = [*self.folder.glob(f"{owner}-*{SUFFIX}"), *self.folder.glob(f"*.{owner}{SUFFIX}")]
                for path in sorted(paths, key=lambda p: p.name):
                    target = path.with_name(f"{path.name.split('.', 1)[0]}.{self.owner}{SUFFIX}")
                    with contextlib.suppress(FileNotFoundError):  # claimed: renamed under our own owner id
                        path.rename(target)
                        self.bytes += target.stat().st_size
                        adopted.append(Segment(target))
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            finally:
                os.close(fd)
        return adopted

    def close(self) -> None:
        """Seal nothing more; release the owner lock (segments still on disk are adopted by the next writer)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
        leftovers = any(self.folder.glob(f"{self.owner}-*{SUFFIX}")) or any(self.folder.glob(f"*.{self.owner}{SUFFIX}"))
        if not leftovers:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{self.owner}.lock").unlink()
        os.close(self._lock_fd)


def segment_key_name(segment: Segment) -> str:
    """The file name a segment's rows get in every partition of the prediction log (the same on every upload)."""
    name = segment.name
    return name.split(".", 1)[0]  # an adopted segment keeps its first owner's name


def read_segment(path: Path) -> tuple[dict[str, Any], Iterator[list[Any]]]:
    """The header and the entries of a segment; a torn last line (a machine crash mid-write) is skipped."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    try:
        header = orjson.loads(lines[0]) if lines and lines[0] else {}
    except orjson.JSONDecodeError:
        header = {}

    def entries() -> Iterator[list[Any]]:
        for number, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("spool %s: line %s is torn and skipped", path.name, number)

    return header, entries()
