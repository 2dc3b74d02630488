"""Who is acting. Every service call takes an ``Actor`` so that rules and the
audit log can name a person (or a process) for every change."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """A person or process acting on the platform."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    kind: str = "user"  # "user" | "local-owner" | "break-glass" | "system" | "replica"
    address: str | None = None
    grants: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (environment, permission)
    token_id: int | None = None  # the API token this actor authenticated with (tokens it mints die with it)
    environment: str | None = None  # a replica credential's one environment (kind "replica")

    @classmethod
    def local_owner(cls) -> Actor:
        """Embedded mode's actor on an unshared store: whoever owns the local home folder.

        An admin of that sandbox, but never on a guarded environment and never an
        approver (``services.sandbox``)."""
        return cls(name=f"local:{os_user()}", roles=frozenset({"admin"}), kind="local-owner")

    @classmethod
    def break_glass(cls, user: str) -> Actor:
        """Embedded mode's actor on a shared store opened with an audited break-glass reason."""
        return cls(name=f"break-glass:{user}", roles=frozenset({"admin"}), kind="break-glass")

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(name=f"system:{name}", roles=frozenset({"admin"}), kind="system")


def os_user() -> str:
    """The operating-system user running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"
