"""How long work tells its caller how far it has got: named stages, and counts when they are known.

Services take a :class:`Progress` and report to it; faces decide whether and how to show it (the CLI
draws a rich progress line on a terminal and nothing when its output is piped). The default reports
nowhere, so code that does not care passes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    """Receives the progress of one piece of long work."""

    def stage(self, text: str) -> None:
        """A new step has begun (e.g. "fitting model:train"); its length is not known."""

    def advance(self, done: int, total: int | None = None) -> None:
        """``done`` units (rows) of ``total`` are finished in the current step."""


class Silent:
    """Progress that goes nowhere."""

    def stage(self, text: str) -> None:
        return None

    def advance(self, done: int, total: int | None = None) -> None:
        return None


SILENT = Silent()


def counted(items: Sequence[T], progress: Progress, *, every: int = 500) -> Iterator[T]:
    """Yield ``items``, telling ``progress`` how many are done every ``every`` items and at the end."""
    total = len(items)
    progress.advance(0, total)
    for done, item in enumerate(items, 1):
        yield item
        if done % every == 0 or done == total:
            progress.advance(done, total)
