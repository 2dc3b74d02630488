"""A flood of failed console log-ins against a real server, with a legitimate user loading pages
meanwhile (bounded in attempts and time): shared by the console benchmark and its test."""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class FloodResult:
    attempts: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    page_ms: list[float] = field(default_factory=list)
    page_statuses: Counter[int] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds if self.seconds else 0.0

    def page_figures(self) -> tuple[float, float, float]:
        """p50, p95 and max milliseconds of the legitimate page loads."""
        times = sorted(self.page_ms)
        p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
        return statistics.median(times), p95, times[-1]


def login_flood(
    url: str, user: httpx.Client, page: str, *, attempts: int = 2000, seconds: float = 10.0, threads: int = 8
) -> FloodResult:
    """``threads`` clients send bad tokens through the login form (each with the form's CSRF token, as a
    browser would) until ``attempts`` were sent or ``seconds`` passed, while ``user`` (logged in) loads
    ``page`` one load after another."""
    deadline = time.monotonic() + seconds
    sent = 0
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    done = threading.Event()

    def attack(index: int) -> None:
        nonlocal sent
        with httpx.Client(base_url=url, timeout=30) as client:
            csrf = CSRF.search(client.get("/console/login").text).group(1)
            n = 0
            while time.monotonic() < deadline:
                with lock:
                    if sent >= attempts:
                        return
                    sent += 1
                n += 1
                answer = client.post(
                    "/console/login", data={"token": f"hm_flood-{index}-{n:06d}-not-a-token", "csrf": csrf}
                )
                with lock:
                    statuses[answer.status_code] += 1
                found = CSRF.search(answer.text)
                if found:
                    csrf = found.group(1)

    result = FloodResult(attempts=0, seconds=0.0)
    began = time.monotonic()
    workers = [threading.Thread(target=attack, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()

    def watch() -> None:
        for worker in workers:
            worker.join(timeout=seconds + 60)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    while not done.is_set():
        started = time.perf_counter()
        answer = user.get(page)
        result.page_ms.append((time.perf_counter() - started) * 1000)
        result.page_statuses[answer.status_code] += 1
    result.seconds = time.monotonic() - began
    result.attempts = sum(statuses.values())
    result.statuses = statuses
    return result
