"""The audit log's hash chain, as pure functions: hash an entry, verify a sequence.

Each entry's ``hash`` is SHA-256 over the canonical JSON of its content plus the
previous entry's hash; ``seq`` counts 1, 2, 3 ... with no gaps. An edited entry
fails its own hash; a removed or reordered one breaks ``seq`` or ``prev_hash``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harbourmaster.core.digest import canonical_json, sha256_bytes

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "actor",
    "address",
    "action",
    "target",
    "environment",
    "outcome",
    "before",
    "after",
    "details",
    "prev_hash",
)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry, from its content and ``prev_hash``."""
    return sha256_bytes(canonical_json({field: entry.get(field) for field in HASHED_FIELDS}))


@dataclass(frozen=True)
class ChainReport:
    """Outcome of a verification: ``ok``, entries checked, head, and the first problem."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify_chain(
    entries: Iterable[Mapping[str, Any]], *, start_seq: int = 1, start_prev_hash: str = GENESIS
) -> ChainReport:
    """Check entries given in ``seq`` order (a whole chain, or an exported segment)."""
    expected_seq = start_seq
    prev_hash = start_prev_hash
    checked = 0
    for entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                missing = f"entry {expected_seq}" if seq == expected_seq + 1 else f"entries {expected_seq}-{seq - 1}"
                problem = f"{missing} removed: the chain jumps from entry {expected_seq - 1} to entry {seq}"
            else:
                problem = f"entry {seq} is out of place: expected entry {expected_seq} (reordered)"
            return ChainReport(False, checked, expected_seq - 1, prev_hash, problem, expected_seq)
        if entry.get("prev_hash") != prev_hash:
            problem = (
                f"entry {seq} does not follow entry {seq - 1}: its prev_hash does not match "
                f"(entries reordered, or entry {seq - 1} removed or rewritten)"
            )
            return ChainReport(False, checked, seq - 1, prev_hash, problem, seq)
        if entry_hash(entry) != entry.get("hash"):
            problem = f"entry {seq} was altered: its content does not match its hash"
            return ChainReport(False, checked, seq - 1, prev_hash, problem, seq)
        prev_hash = str(entry["hash"])
        expected_seq += 1
        checked += 1
    return ChainReport(True, checked, expected_seq - 1, prev_hash)
