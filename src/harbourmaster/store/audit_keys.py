"""The audit signing key: an Ed25519 private key in a file only the control plane reads.

Generated on first use into the control plane's home (mode 0600), or read from the
file ``HARBOURMASTER_AUDIT_KEY_FILE`` names. Creation is exclusive: two processes
starting together end up with the same key, never one each.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbourmaster.errors import InvalidInputError


def load_or_create_signing_key(path: Path, *, create: bool = True) -> tuple[Ed25519PrivateKey, bool]:
    """The key in ``path`` and whether it was created just now (only if ``create``)."""
    if not path.exists():
        if not create:
            raise InvalidInputError(
                f"the audit signing key {path} does not exist",
                "point HARBOURMASTER_AUDIT_KEY_FILE at the control plane's key, or unset it to use the home's",
            )
        if _create(path):
            return _load(path), True
    return _load(path), False


def _create(path: Path) -> bool:
    """Write a new key to ``path`` unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic and exclusive: never replaces an existing key
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _load(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInputError(
            f"the audit signing key {path} is readable by others (mode {stat.filemode(mode)})",
            f"only the control plane may read it: chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise InvalidInputError(
            f"{path} is not a PEM private key: {exc}", "restore the key file from its backup"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInputError(f"{path} holds no Ed25519 key", "restore the key file from its backup")
    return key
