"""The audit log's signed hash chain and its anchors, as pure functions (no I/O).

Each entry's ``hash`` is SHA-256 over the canonical JSON of its content plus the
previous entry's hash; ``seq`` counts 1, 2, 3 ... with no gaps. An edited entry
fails its own hash; a removed or reordered one breaks ``seq`` or ``prev_hash``.

Hashes alone stop careless tamperers only: anyone who can write the table can
recompute them. So each entry also carries an Ed25519 ``signature`` over its
hash, made with a key only the control plane holds, and the control plane
writes signed *anchors* (seq, hash, time, count) outside the database. An
entry rewritten and rehashed, or forged with a correct hash, has no valid
signature; entries cut off the end no longer reach the newest anchor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
ANCHOR_FIELDS = ("seq", "hash", "at", "count", "reason", "key_id", "unsigned_upto")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry, from its content and ``prev_hash``."""
    return sha256_bytes(canonical_json({field: entry.get(field) for field in HASHED_FIELDS}))


# -- keys and signatures ---------------------------------------------------------------


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of its SHA-256)."""
    return sha256_bytes(public_key_bytes(key))[:16]


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (``audit public-key``) or 64 hex digits; ValueError otherwise."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the key is not an Ed25519 public key")
        return key
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("expected a PEM public key or 64 hex digits") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return key.sign(data).hex()


def signature_valid(key: Ed25519PublicKey, data: bytes, signature: Any) -> bool:
    if not isinstance(signature, str):
        return False
    try:
        key.verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def entry_signature_valid(key: Ed25519PublicKey, entry: Mapping[str, Any]) -> bool:
    """Whether an entry's signature covers its stored hash (use with ``entry_hash`` for its content)."""
    return signature_valid(key, str(entry.get("hash")).encode(), entry.get("signature"))


def signed_document(key: Ed25519PrivateKey, document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` plus a ``signature`` over the canonical JSON of everything else."""
    body = {name: value for name, value in document.items() if name != "signature"}
    return {**body, "signature": sign(key, canonical_json(body))}


def document_signature_valid(key: Ed25519PublicKey, document: Mapping[str, Any]) -> bool:
    body = {name: value for name, value in document.items() if name != "signature" and not name.startswith("_")}
    return signature_valid(key, canonical_json(body), document.get("signature"))


# -- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """Outcome of a verification: ``ok``, entries checked, head, and every problem found.

    ``problem`` and ``bad_seq`` name the first problem; ``problems`` lists all of them
    (chain, anchors, and rows of other tables that claim an audit entry they do not have).
    """

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None
    problems: tuple[str, ...] = ()
    anchored_seq: int | None = None
    signed: bool = False

    def with_problems(self, problems: Sequence[str], bad_seq: int | None = None) -> ChainReport:
        """This report with further problems appended (the first problem stays first)."""
        if not problems:
            return self
        everything = (*self.problems, *problems)
        return replace(
            self,
            ok=False,
            problem=everything[0],
            problems=everything,
            bad_seq=self.bad_seq if self.problem else bad_seq,
        )


def verify_chain(
    entries: Iterable[Mapping[str, Any]],
    *,
    start_seq: int = 1,
    start_prev_hash: str = GENESIS,
    public_key: Ed25519PublicKey | None = None,
    unsigned_upto: int = 0,
) -> ChainReport:
    """Check entries given in ``seq`` order (a whole chain, or an exported segment).

    With ``public_key``, every entry must also carry a valid signature over its hash,
    except entries up to ``unsigned_upto`` (written before the store had a key, and
    covered by a signed anchor).
    """
    expected_seq = start_seq
    prev_hash = start_prev_hash
    checked = 0

    def broken(problem: str, bad_seq: int | None) -> ChainReport:
        return ChainReport(
            False, checked, expected_seq - 1, prev_hash, problem, bad_seq, (problem,), signed=public_key is not None
        )

    for entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                missing = f"entry {expected_seq}" if seq == expected_seq + 1 else f"entries {expected_seq}-{seq - 1}"
                return broken(
                    f"{missing} removed: the chain jumps from entry {expected_seq - 1} to entry {seq}", expected_seq
                )
            return broken(f"entry {seq} is out of place: expected entry {expected_seq} (reordered)", expected_seq)
        if entry.get("prev_hash") != prev_hash:
            return broken(
                f"entry {seq} does not follow entry {seq - 1}: its prev_hash does not match "
                f"(entries reordered, or entry {seq - 1} removed or rewritten)",
                seq,
            )
        if entry_hash(entry) != entry.get("hash"):
            return broken(f"entry {seq} was altered: its content does not match its hash", seq)
        if public_key is not None and not entry_signature_valid(public_key, entry):
            if entry.get("signature") is None and seq <= unsigned_upto:
                pass  # from before the store had a key; a signed anchor vouches for it
            elif entry.get("signature") is None:
                return broken(
                    f"entry {seq} is not signed: it was not written by the control plane "
                    f"(a forged entry, or its signature was removed)",
                    seq,
                )
            else:
                return broken(
                    f"entry {seq} has no valid signature: it was rewritten and rehashed, "
                    f"or forged (or signed with another key)",
                    seq,
                )
        prev_hash = str(entry["hash"])
        expected_seq += 1
        checked += 1
    return ChainReport(True, checked, expected_seq - 1, prev_hash, signed=public_key is not None)


@dataclass(frozen=True)
class AnchorCheck:
    """What the anchors say about a chain: problems, the newest valid anchor, unsigned prefix."""

    problems: list[str] = field(default_factory=list)
    bad_seq: int | None = None
    anchored_seq: int | None = None
    unsigned_upto: int = 0


def valid_anchors(public_key: Ed25519PublicKey, anchors: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [anchor for anchor in anchors if document_signature_valid(public_key, anchor)]


def unsigned_prefix(public_key: Ed25519PublicKey, anchors: Iterable[Mapping[str, Any]]) -> int:
    """How many leading entries signed anchors vouch for although they carry no signature."""
    return max((int(a.get("unsigned_upto") or 0) for a in valid_anchors(public_key, anchors)), default=0)


def check_anchors(
    public_key: Ed25519PublicKey,
    anchors: Sequence[Mapping[str, Any]],
    hashes: Mapping[int, str],
    head_seq: int,
) -> AnchorCheck:
    """Check a chain (``hashes``: seq -> hash of the entries present) against its anchors.

    Every anchor must carry a valid signature; the chain must reach the newest valid
    anchor and hold, at each anchored seq, the anchored hash. An empty chain with
    anchors present had all its entries removed.
    """
    problems: list[str] = []
    bad_seq: int | None = None
    valid = []
    for anchor in anchors:
        if document_signature_valid(public_key, anchor):
            valid.append(anchor)
        else:
            problems.append(
                f"anchor {anchor.get('_name', '?')} (entry {anchor.get('seq')}, {anchor.get('at')}) has no valid "
                f"signature: it was forged or altered"
            )
    valid.sort(key=lambda anchor: int(anchor["seq"]))
    newest = valid[-1] if valid else None
    if newest is not None and head_seq == 0:
        problems.insert(0, f"all entries removed: the audit table is empty, but {_anchored(newest)}")
        return AnchorCheck(problems, 1, int(newest["seq"]), unsigned_prefix(public_key, valid))
    if newest is not None and int(newest["seq"]) > head_seq:
        seq = int(newest["seq"])
        missing = f"entry {seq}" if seq == head_seq + 1 else f"entries {head_seq + 1}-{seq}"
        problems.insert(0, f"{missing} removed: the chain ends at entry {head_seq}, but {_anchored(newest)}")
        bad_seq = head_seq + 1
    for anchor in valid:
        seq = int(anchor["seq"])
        if seq in hashes and hashes[seq] != anchor["hash"]:
            problems.append(f"entry {seq} differs from its signed anchor of {anchor['at']}: the chain was rewritten")
            bad_seq = seq if bad_seq is None else min(bad_seq, seq)
    return AnchorCheck(problems, bad_seq, int(newest["seq"]) if newest else None, unsigned_prefix(public_key, valid))


def _anchored(anchor: Mapping[str, Any]) -> str:
    if anchor.get("_name") == "in memory":
        return f"this control plane signed entry {anchor['seq']} at {anchor['at']}"
    return f"entry {anchor['seq']} was anchored at {anchor['at']} ({anchor.get('_name', 'in the export')})"
