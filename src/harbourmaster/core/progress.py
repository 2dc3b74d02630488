"""How long work tells its caller how far it has got: named stages, and counts when they are known.

Services take a :class:`Progress` and report to it; faces decide whether and how to show it (the CLI
draws a rich progress line on a terminal and nothing when its output is piped). The default reports
nowhere, so code that does not care passes nothing.
"""

from __future__ import annotations

from typing import Protocol


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
