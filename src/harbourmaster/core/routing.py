"""Traffic routing decisions between a champion and a canary challenger (pure)."""

from __future__ import annotations

import hashlib
import random
from typing import Literal

Side = Literal["champion", "challenger"]


def bucket(key: str) -> float:
    """A stable position in [0, 100) for a sticky key: one caller always lands on one side."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


def choose_side(weight: float, sticky_value: str | None = None, draw: float | None = None) -> Side:
    """Champion or challenger for one request, given the canary ``weight`` in percent.

    With a sticky value the choice is a stable hash of it; otherwise ``draw`` (a
    number in [0, 100), random when omitted) decides.
    """
    if weight <= 0:
        return "champion"
    if weight >= 100:
        return "challenger"
    if sticky_value is not None:
        position = bucket(sticky_value)
    else:
        position = draw if draw is not None else random.random() * 100.0
    return "challenger" if position < weight else "champion"
