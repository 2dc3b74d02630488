"""Real servers on 127.0.0.1 for tests: a free port, and an ASGI app under uvicorn in a thread."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port nothing listens on, from below the kernel's ephemeral range: a port the kernel hands
    to another test's ``bind(port 0)`` (or an outgoing connection) meanwhile can never be this one, so a test
    may pass it to a server it starts later (a subprocess, a line of the README tour)."""
    low = _ephemeral_range()[0]
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range after 200 tries")


@contextmanager
def serve_in_thread(app: Any, *, start_seconds: float = 20, stop_seconds: float = 15) -> Iterator[str]:
    """Run ``app`` on a free loopback port; yields its base URL; stops it (bounded) on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-test-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_seconds)
        assert not thread.is_alive(), "the test server did not stop"
