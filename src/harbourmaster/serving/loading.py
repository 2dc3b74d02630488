"""Loading and warming a version under a deadline, so that a model that hangs cannot wedge a replica.

Unpickling a bundle and its warm-up prediction run the model author's code
(``__setstate__``, a custom transformer, a prepare step). ``Loader.load`` runs
that work in a daemon thread and waits for it at most ``deadline`` seconds (and
no longer than the replica keeps running): past it the version is refused with
``LoadTimeout`` and the reconciler goes on with every other project. The stuck
thread cannot be killed (Python has no way to), so it is left behind as a daemon
(it never keeps the process from exiting) and the same bundle is not tried again
while it is still stuck: at most one stuck thread per bundle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LoadTimeout(Exception):
    """Loading or warming a version did not finish within the deadline (or the replica is stopping)."""


class Loader:
    """Runs load + warm-up work under a deadline; remembers the loads that are stuck."""

    def __init__(self, deadline_seconds: float, stopping: threading.Event | None = None) -> None:
        self.deadline = deadline_seconds
        self.stopping = stopping or threading.Event()
        self._stuck: dict[str, tuple[float, threading.Thread]] = {}
        self._lock = threading.Lock()

    def stuck(self) -> dict[str, float]:
        """Keys of loads still running past their deadline, with the time (monotonic) they started."""
        with self._lock:
            for key in [k for k, (_, thread) in self._stuck.items() if not thread.is_alive()]:
                del self._stuck[key]
            return {key: since for key, (since, _) in self._stuck.items()}

    def load(self, key: str, what: str, work: Callable[[], T]) -> T:
        """``work()`` in a daemon thread; its result, its exception, or ``LoadTimeout`` past the deadline."""
        since = self.stuck().get(key)
        if since is not None:
            raise LoadTimeout(
                f"{what}: an earlier load of this bundle is still stuck after {time.monotonic() - since:.0f} s"
            )
        done = threading.Event()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = work()
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                done.set()

        started = time.monotonic()
        thread = threading.Thread(target=target, name=f"hm-load-{key[:12]}", daemon=True)
        thread.start()
        while not done.wait(0.1):
            if self.stopping.is_set():
                self._remember(key, started, thread)
                raise LoadTimeout(f"{what}: the replica is stopping")
            if time.monotonic() - started > self.deadline:
                self._remember(key, started, thread)
                raise LoadTimeout(f"{what} did not load and warm within {self.deadline:g} s (the model hangs?)")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _remember(self, key: str, started: float, thread: threading.Thread) -> None:
        with self._lock:
            self._stuck[key] = (started, thread)
