"""A local write-ahead spool for captured predictions: what was answered survives a crash or a store outage.

One folder per environment in the replica's cache. Every process that writes owns
an id (a lock file ``<owner>.lock`` it holds an exclusive ``flock`` on while it
lives) and appends one JSON line per answered request to its live *segment*
``<owner>-<seq>.seg`` (the first line is a header naming the environment and the
replica). The capture writer *seals* the live segment at each flush (it starts a
new one), uploads the sealed segment's rows as one Parquet file per partition
whose key is derived from the segment's name, and then removes the segment.

Durability policy (group commit):

* every line is copied into the live segment's shared memory mapping before the answer
  is sent, so it survives the death of the process (SIGKILL, OOM kill, a crash): the
  page cache owns it. A copy, not a ``write(2)``: a system call would hand the GIL to
  another thread and make the event loop wait to get it back (measured: a 6 µs write
  cost the loop about 50 µs under load). Disk blocks are reserved (``posix_fallocate``)
  before a mapping grows, so a full disk is an error here, never a SIGBUS later;
* the live segment is ``fdatasync``-ed every ``fsync_seconds`` (0.2 s by default)
  by the writer thread and once more when sealed (unmapped and cut to its length),
  so a crash of the *machine* loses at most that much.

Replay: a segment whose owner's lock can be taken belongs to a dead process;
any writer adopts and uploads it. Because a segment always becomes the same
Parquet keys with the same rows, uploading it twice (the killed process had
uploaded part of it) overwrites files instead of duplicating rows.

The spool is bounded (``max_bytes``); a full spool refuses lines, and the caller
counts them as dropped. Not thread-safe: callers serialise ``append`` and ``seal``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import mmap
import os
import threading
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
SPARE_SUFFIX = ".spare"  # a segment made ahead of time, holding no request yet
SEGMENT_BYTES = 8 << 20  # reserved when a segment opens; doubled while a flush interval writes more
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # populate: no page fault per new page


def _reserve(fd: int, offset: int, needed: int, wanted: int) -> int:
    """Reserve disk blocks from ``offset``: ``wanted`` bytes, or ``needed`` on a nearly full disk; the size.

    Reserved blocks mean a full disk is an ENOSPC here, never a SIGBUS when the mapping is written.
    """
    for size in dict.fromkeys((max(needed, wanted), needed)):
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, offset, size)
            else:  # pragma: no cover - no posix_fallocate: a sparse file, like plain writes
                os.ftruncate(fd, offset + size)
            return size
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG) or size == needed:
                raise
    raise AssertionError("unreachable")


@dataclass
class Segment:
    """One sealed (or adopted) segment file and what is known of it."""

    path: Path
    seq: int = 0  # this owner's sequence number (0: adopted from another owner)
    rows: int = 0  # answered rows it holds (a request without rows counts one)
    fd: int | None = None  # open until ``finish`` (sealed by the writer thread, synced outside the lock)
    view: mmap.mmap | None = None  # the live mapping, until ``finish``
    length: int = 0  # bytes written (the file is longer while mapped: preallocated)

    def finish(self) -> None:
        """Unmap, cut the preallocated tail, sync and close a freshly sealed segment (its group commit)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                if self.view is not None:
                    view, self.view = self.view, None
                    view.close()
                    os.ftruncate(fd, self.length)
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Unmap, close and delete a segment that holds no request (a spare never used)."""
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)

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
        self._seqs = itertools.count(1)  # next() is atomic: the writer thread and the request path share it
        self._seq = 0  # the live segment's
        self._spare: Segment | None = None
        self._spare_lock = threading.Lock()  # hands the spare from the writer thread to the request path
        self._closed = False
        self._fd: int | None = None
        self._path: Path | None = None
        self._view: mmap.mmap | None = None
        self._position = 0  # bytes written to the live segment
        self.live_rows = 0
        self.bytes = 0  # bytes of this owner's segments still on disk (and of adopted ones)
        self._dirty = False

    # -- writing (request path) ------------------------------------------------------

    def append(self, line: bytes, rows: int) -> int:
        """Write one line (ending in a newline) to the live segment; its sequence number.

        The line is copied into the segment's shared mapping: from then on the kernel owns it (it
        survives the death of the process), and no system call runs, so the event loop's thread never
        gives the GIL away here. Raises SpoolFull when the spool is at its limit or the disk is full.
        """
        size = len(line)
        if self.bytes + size > self.max_bytes:
            raise SpoolFull(f"spool at its limit of {self.max_bytes} bytes")
        view = self._view
        if view is None:
            view = self._open(size)
        start = self._position
        end = start + size
        if end > len(view):
            view = self._grow(end)
        view[start:end] = line
        self._position = end
        self.bytes += size
        self.live_rows += rows
        self._dirty = True
        return self._seq

    def _open(self, first_line: int) -> mmap.mmap:
        """Make the spare segment (prepared by the writer thread) live, or open one now."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None and len(spare.view) >= len(self._header) + first_line:  # type: ignore[arg-type]
            try:
                live = spare.path.with_name(f"{self.owner}-{spare.seq:09d}{SUFFIX}")
                spare.path.rename(live)  # one rename per segment; the mapping stays valid
                spare.path = live
            except OSError:
                spare.discard()
                spare = None
        elif spare is not None:
            spare.discard()
            spare = None
        if spare is None:
            spare = self._create(len(self._header) + first_line, SUFFIX)
        self._seq = spare.seq
        self._fd, self._path, self._view, self._position = spare.fd, spare.path, spare.view, len(self._header)
        self.bytes += len(self._header)
        assert spare.view is not None
        return spare.view

    def _create(self, needed: int, suffix: str) -> Segment:
        """A new segment file, reserved and mapped (populating the mapping is the slow part), header written."""
        seq = next(self._seqs)
        path = self.folder / f"{self.owner}-{seq:09d}{suffix}"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            capacity = _reserve(fd, 0, needed, SEGMENT_BYTES)
            view = mmap.mmap(fd, capacity, flags=_MAP_FLAGS)
        except (OSError, ValueError) as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise SpoolFull(str(exc)) from exc
        view[: len(self._header)] = self._header
        return Segment(path, seq, 0, fd, view, len(self._header))

    def prepare(self) -> None:
        """Create the next segment ahead of time (writer thread, no lock): the event loop never maps one.

        Safe beside ``append``.
        """
        if self._spare is not None or self._closed:
            return
        try:
            spare = self._create(len(self._header), SPARE_SUFFIX)
        except SpoolFull:  # the request path tries again (and counts a failure)
            return
        with self._spare_lock:
            if self._spare is None and not self._closed:
                self._spare, spare = spare, None
        if spare is not None:
            spare.discard()

    def _grow(self, needed: int) -> mmap.mmap:
        """Double the live segment's mapping (disk space reserved first: a write never meets a full disk)."""
        view, fd = self._view, self._fd
        assert view is not None and fd is not None
        try:
            capacity = len(view) + _reserve(fd, len(view), needed - len(view), len(view))
            view.resize(capacity)
        except (OSError, ValueError) as exc:
            raise SpoolFull(str(exc)) from exc
        return view

    # -- the writer thread ---------------------------------------------------------------

    def sync(self) -> None:
        """fdatasync the live segment if it changed (the group commit); safe beside ``append``, not ``seal``.

        On Linux, fdatasync writes back the pages dirtied through the mapping as well.
        """
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
        segment = Segment(self._path, self._seq, self.live_rows, self._fd, self._view, self._position)
        self._fd, self._path, self._view, self._position, self.live_rows, self._dirty = None, None, None, 0, 0, False
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
                for spare in self.folder.glob(f"{owner}-*{SPARE_SUFFIX}"):
                    spare.unlink(missing_ok=True)
                paths = [*self.folder.glob(f"{owner}-*{SUFFIX}"), *self.folder.glob(f"*.{owner}{SUFFIX}")]
                for path in sorted(paths, key=lambda p: p.name):
                    target = path.with_name(f"{path.name.split('.', 1)[0]}.{self.owner}{SUFFIX}")
                    with contextlib.suppress(FileNotFoundError):  # claimed: renamed under our own owner id
                        path.rename(target)
                        self.bytes += _trim_zero_tail(target)
                        adopted.append(Segment(target))
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            finally:
                os.close(fd)
        return adopted

    def close(self) -> None:
        """Seal nothing more; release the owner lock (segments still on disk are adopted by the next writer)."""
        live = self.seal()
        if live is not None:
            with contextlib.suppress(OSError):
                live.finish()
        with self._spare_lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()
        leftovers = any(self.folder.glob(f"{self.owner}-*{SUFFIX}")) or any(self.folder.glob(f"*.{self.owner}{SUFFIX}"))
        if not leftovers:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{self.owner}.lock").unlink()
        os.close(self._lock_fd)


def _trim_zero_tail(path: Path) -> int:
    """Cut the preallocated, never-written tail of a segment whose writer died; its size."""
    data = path.read_bytes()
    kept = len(data.rstrip(b"\0"))
    if kept < len(data):
        os.truncate(path, kept)
    return kept


def segment_key_name(segment: Segment) -> str:
    """The file name a segment's rows get in every partition of the prediction log (the same on every upload)."""
    name = segment.name
    return name.split(".", 1)[0]  # an adopted segment keeps its first owner's name


def read_segment(path: Path) -> tuple[dict[str, Any], Iterator[list[Any]]]:
    """The header and the entries of a segment; a torn last line (a machine crash mid-write) is skipped."""
    data = path.read_bytes().rstrip(b"\0")  # a zeroed tail: its writer died while it was mapped
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
