"""What each replica of an environment made of one revision of a deployment (pure, no I/O).

Replicas report in their heartbeats, per project, the revision they serve
(``loaded``) and the revision they refused with the error (``details.refused``).
From these a deploy can tell, replica by replica, whether its change took. A replica
still in its first reconcile reports ``starting``: it counts, as pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["START_GRACE_SECONDS", "ReplicaOutcome", "RolloutProgress", "rollout_progress"]

Outcome = Literal["loaded", "refused", "pending"]
LIVE = ("starting", "alive")  # heartbeat statuses of a replica that is up (a stale one is not)
# A replica process needs a few seconds (imports, opening its store) before its first heartbeat says
# "starting": a deploy issued right after `harbourmaster serve &` looks that long for one to appear.
START_GRACE_SECONDS = 5.0


class ReplicaReport(Protocol):
    """What a heartbeat left of a replica (``harbourmaster.schemas.ReplicaInfo`` is one)."""

    id: str
    address: str
    status: str
    loaded: dict[str, Any]
    details: dict[str, Any]


@dataclass(frozen=True)
class ReplicaOutcome:
    """One replica's answer to a revision."""

    replica: str
    address: str
    outcome: Outcome
    serving: int | None  # the revision it serves now (None: nothing of this project)
    error: str | None = None
    starting: bool = False  # still in its first reconcile

    def describe(self) -> str:
        where = f" ({self.address})" if self.address else ""
        serving = f"revision {self.serving}" if self.serving is not None else "nothing"
        if self.outcome == "loaded":
            return f"{self.replica}{where} loaded it (serving revision {self.serving})"
        if self.outcome == "refused":
            return f"{self.replica}{where} refused it, still serving {serving}: {self.error}"
        if self.starting:
            return f"{self.replica}{where} is starting and has not loaded it yet"
        return f"{self.replica}{where} has not loaded it yet (serving {serving})"


@dataclass(frozen=True)
class RolloutProgress:
    """Every live replica's outcome for one revision."""

    revision: int
    replicas: tuple[ReplicaOutcome, ...]

    @property
    def settled(self) -> bool:
        """Every live replica has loaded or refused the revision."""
        return all(item.outcome != "pending" for item in self.replicas)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.replicas if item.outcome == outcome)

    def summary(self) -> str:
        if not self.replicas:
            return f"revision {self.revision}: no replica up yet"
        return (
            f"revision {self.revision}: {self.count('loaded')} of {len(self.replicas)} replica(s) loaded it, "
            f"{self.count('refused')} refused, {self.count('pending')} pending"
        )


def rollout_progress(replicas: Iterable[ReplicaReport], project: str, revision: int) -> RolloutProgress:
    """The outcome of ``revision`` of ``project`` on each live (``alive`` or ``starting``) replica in ``replicas``."""
    outcomes = [
        _outcome(replica, project, revision)
        for replica in sorted(replicas, key=lambda r: r.id)
        if replica.status in LIVE
    ]
    return RolloutProgress(revision, tuple(outcomes))


def _outcome(replica: ReplicaReport, project: str, revision: int) -> ReplicaOutcome:
    loaded: Any = replica.loaded.get(project) or {}
    serving = loaded.get("revision") if isinstance(loaded, dict) else None
    serving = serving if isinstance(serving, int) else None
    refused: Any = (replica.details.get("refused") or {}).get(project)
    if serving is not None and serving >= revision:
        return ReplicaOutcome(replica.id, replica.address, "loaded", serving)
    if isinstance(refused, dict) and isinstance(refused.get("revision"), int) and refused["revision"] >= revision:
        return ReplicaOutcome(replica.id, replica.address, "refused", serving, str(refused.get("error") or "refused"))
    return ReplicaOutcome(replica.id, replica.address, "pending", serving, starting=replica.status == "starting")
