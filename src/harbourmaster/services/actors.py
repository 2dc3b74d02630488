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
    kind: str = "user"  # "user" | "local-owner" | "system" | "replica"
    address: str | None = None
    grants: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (environment, permission)
    token_id: int | None = None  # the API token this actor authenticated with (tokens it mints die with it)
    environment: str | None = None  # a replica credential's one environment (kind "replica")

    @classmethod
    def local_owner(cls) -> Actor:
        """The embedded CLI's actor: whoever owns the local home folder."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "owner"
        return cls(name=f"local:{user}", roles=frozenset({"admin"}), kind="local-owner")

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(name=f"system:{name}", roles=frozenset({"admin"}), kind="system")
