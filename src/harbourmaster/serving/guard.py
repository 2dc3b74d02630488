"""Token checks of a guarded replica that a flood of bad tokens cannot turn into a flood of work.

The check itself is a backend (today ``platform.access.authorize_prediction``, which
caches positive answers; tomorrow a control-plane call): ``TokenGuard`` sits in
front of it, caches *refusals* briefly (a bounded LRU keyed by the token's SHA-256,
so a repeated bad token costs a dict lookup), runs a cache miss in a thread (the
event loop never waits on the database), and audits refusals in aggregate: one
entry per token hash and reason per interval, with a count, written by its own
thread. Beyond ``max_tallies`` distinct tokens in one interval, the rest are folded
into one entry (``token_sha256 = "*"``) counting requests and distinct tokens, so
the audit grows by a bounded number of rows per interval whatever the attacker sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harbourmaster.errors import AuthenticationError, HarbourmasterError

log = logging.getLogger("harbourmaster.serving.guard")

Check = Callable[[str, str | None], Any]  # (token, client address) -> actor; raises on refusal


@dataclass
class RefusalTally:
    """Refusals of one token (hash) for one reason within one interval."""

    token_sha256: str
    reason: str
    status: int
    count: int = 0
    first: datetime = field(default_factory=lambda: datetime.now(UTC))
    last: datetime = field(default_factory=lambda: datetime.now(UTC))
    addresses: set[str] = field(default_factory=set)
    tokens: int = 1  # distinct tokens folded into this tally (more than one only for the overflow tally)
    actor: str | None = None  # the token's user, when it is known but refused (a 403)


Audit = Callable[[list[RefusalTally]], None]


class TokenGuard:
    """Refusal cache and aggregated refusal audit in front of a token-check backend."""

    def __init__(
        self,
        check: Check,
        audit: Audit,
        *,
        refusal_ttl: float = 5.0,
        max_cached: int = 10_000,
        interval: float = 10.0,
        max_tallies: int = 100,
    ) -> None:
        self._check = check
        self._audit = audit
        self._ttl = refusal_ttl
        self._max_cached = max_cached
        self._interval = interval
        self._max_tallies = max_tallies
        self._refusals: OrderedDict[str, tuple[float, HarbourmasterError]] = OrderedDict()
        self._tallies: dict[tuple[str, str], RefusalTally] = {}
        self._overflow_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hm-guard-audit", daemon=True)
        self._thread.start()

    async def authorize(self, token: str | None, address: str | None) -> Any:
        """The caller's actor; raises the (cached) refusal, tallied for the audit."""
        digest = hashlib.sha256((token or "").encode()).hexdigest()
        now = time.monotonic()
        if not token:
            error: HarbourmasterError = AuthenticationError("a token is required", "send Authorization: Bearer <token>")
            self._tally(digest, error, address)
            raise error
        with self._lock:
            cached = self._refusals.get(digest)
            if cached is not None and now - cached[0] < self._ttl:
                self._tally_locked(digest, cached[1], address)
                raise cached[1]
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._check, token, address)
        except HarbourmasterError as exc:
            if exc.http_status >= 500:
                raise
            with self._lock:
                self._refusals[digest] = (now, exc)
                self._refusals.move_to_end(digest)
                while len(self._refusals) > self._max_cached:
                    self._refusals.popitem(last=False)
                self._tally_locked(digest, exc, address)
            raise

    def _tally(self, digest: str, error: HarbourmasterError, address: str | None) -> None:
        with self._lock:
            self._tally_locked(digest, error, address)

    def _tally_locked(self, digest: str, error: HarbourmasterError, address: str | None) -> None:
        key = (digest, error.code)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= self._max_tallies:
                key = ("*", error.code)
                self._overflow_tokens.add(digest)
                tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = RefusalTally(key[0], error.code, error.http_status)
                if key[0] != "*":
                    tally.actor = getattr(error, "actor", None)
        tally.count += 1
        tally.last = datetime.now(UTC)
        if address and len(tally.addresses) < 10:
            tally.addresses.add(address)
        if key[0] == "*":
            tally.tokens = len(self._overflow_tokens)

    def flush(self) -> int:
        """Write the tallies of the interval now; the number of audit entries handed over."""
        with self._lock:
            tallies, self._tallies = list(self._tallies.values()), {}
            self._overflow_tokens = set()
        if tallies:
            try:
                self._audit(tallies)
            except Exception:
                log.exception("could not audit %s refusal tallies", len(tallies))
        return len(tallies)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        """Stop the audit thread after writing what is tallied."""
        self._stop.set()
        self._thread.join(10)
        self.flush()
