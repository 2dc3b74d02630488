"""Content digests: stable SHA-256 over bytes, JSON values and data frames."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["canonical_json", "frame_fingerprint", "sha256_bytes", "sha256_json"]


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON: sorted keys, no whitespace, UTF-8.

    Raises ``ValueError`` for NaN or infinite floats, which have no JSON form,
    and ``TypeError`` for values JSON cannot represent.
    """
    text = json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return text.encode("utf-8")


def sha256_json(value: Any) -> str:
    """Return the hex SHA-256 digest of the canonical JSON form of ``value``."""
    return sha256_bytes(canonical_json(value))


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """Return a stable SHA-256 over a frame's column names, dtypes and values.

    The index is ignored, so the same rows in the same order give the same
    fingerprint whatever their labels. Row order and column order matter.
    """
    import pandas as pd

    digest = hashlib.sha256()
    header = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(canonical_json(header))
    digest.update(b"\x00")
    digest.update(str(len(frame)).encode("ascii"))
    digest.update(b"\x00")
    if len(frame.columns) and len(frame):
        hashed = pd.util.hash_pandas_object(frame, index=False)
        digest.update(hashed.to_numpy(dtype="uint64").tobytes())
    return digest.hexdigest()
