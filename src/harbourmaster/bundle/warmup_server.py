"""A warm-up fork server: one clean process that imports the loading libraries once and forks a child per warm-up.

Starting an interpreter and importing numpy, pandas, scikit-learn and onnxruntime takes
about two seconds; a warm-up itself takes milliseconds. The server is started with the
same cleaned environment as a one-off warm-up process (no credentials, no platform
settings) and imports only libraries, never project code, so each forked child starts
as clean as a fresh interpreter would, and what a model's code does in one child cannot
reach the next. The server ends when its parent closes its stdin (the parent exited).

Protocol, over a Unix socket in a private folder: the parent sends one JSON request line;
the child answers ``{"pid": ...}`` at once, then its report line. The parent enforces the
deadline and kills the child by its pid. Run as ``python -m harbourmaster.bundle.warmup_server SOCKET``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["PRELOADED", "serve"]

# What loading and predicting imports; a module missing here (an optional extra) is skipped.
PRELOADED = (
    "numpy",
    "pandas",
    "pyarrow",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "skops.io",
    "onnx",
    "onnxruntime",
    "harbourmaster.bundle.predictor",
    "harbourmaster.bundle.storage",
    "harbourmaster.bundle.onnx_model",
    "harbourmaster.bundle.warmup",
)
CHILD_OUTPUT = "output.txt"  # in the request's folder: what the model's code printed


def serve(socket_path: str, warm: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Accept warm-up requests on ``socket_path`` until stdin closes; each runs ``warm`` in a forked child."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([listener, stdin], [], [])
        if stdin in readable and not os.read(stdin, 4096):
            os._exit(0)
        if listener in readable:
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                _child(connection, warm)
            connection.close()


def _child(connection: socket.socket, warm: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """In a forked child: answer one request, then exit without running the server's clean-up."""
    status = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        stream = connection.makefile("rwb")
        request = json.loads(stream.readline())
        os.chdir(request["home"])
        _redirect_output(os.path.join(request["home"], CHILD_OUTPUT))
        stream.write(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        stream.flush()
        report = warm(request)
        stream.write(json.dumps(report).encode() + b"\n")
        stream.flush()
        status = 0 if report.get("ok") else 1
    finally:
        os._exit(status)  # no waiting on threads the model's code may have left behind


def _redirect_output(path: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for target in (1, 2):
        os.dup2(descriptor, target)
    os.close(descriptor)


def main() -> None:
    for name in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from harbourmaster.bundle.warmup import warm

    serve(sys.argv[1], warm)


if __name__ == "__main__":
    main()
