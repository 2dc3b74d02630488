"""Starting and stopping the servers a benchmark measures: a free loopback port, waiting for it, stopping."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

__all__ = ["free_port", "stop", "wait_port"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Return once ``port`` accepts connections; raise if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"port {port}: the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session=True``); SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
