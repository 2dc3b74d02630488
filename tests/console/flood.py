"""A flood of failed console log-ins against a real server, with a legitimate user loading pages
meanwhile (bounded in attempts and time): shared by the console benchmark and its test. The flood comes
from a process of its own, as an attacker's would."""

from __future__ import annotations

import multiprocessing
import re
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
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
    """A process of its own (so that it does not share the server's interpreter) runs ``threads`` clients
    sending bad tokens through the login form (each with the form's CSRF token, as a browser would) until
    ``attempts`` were sent or ``seconds`` passed, while ``user`` (logged in) loads ``page`` one load after
    another here."""
    result = FloodResult(attempts=0, seconds=0.0)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        flood = pool.submit(attack, url, attempts, seconds, threads)
        while not flood.done():
            started = time.perf_counter()
            answer = user.get(page)
            result.page_ms.append((time.perf_counter() - started) * 1000)
            result.page_statuses[answer.status_code] += 1
        statuses, result.seconds = flood.result(timeout=seconds + 120)
    result.statuses = Counter(statuses)
    result.attempts = sum(statuses.values())
    return result


def attack(url: str, attempts: int, seconds: float, threads: int) -> tuple[dict[int, int], float]:
    """Bad log-ins from ``threads`` clients: the statuses answered, and the seconds from the first to the last."""
    ready = threading.Barrier(threads + 1)
    sent = 0
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    deadline = [0.0]

    def run(index: int) -> None:
        nonlocal sent
        with httpx.Client(base_url=url, timeout=30) as client:
            csrf = CSRF.search(client.get("/console/login").text).group(1)
            ready.wait(timeout=60)
            n = 0
            while time.monotonic() < deadline[0]:
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

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.monotonic() + 3600  # set for real once every client has its form
    ready.wait(timeout=60)
    began = time.monotonic()
    deadline[0] = began + seconds
    for worker in workers:
        worker.join(timeout=seconds + 60)
    return dict(statuses), time.monotonic() - began
