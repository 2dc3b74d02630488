"""Warm a version before it is registered: load it and answer one row, in a clean process, with a deadline.

A replica loads a version, then predicts once on its reference row before taking
traffic; a version that cannot do that is refused by every replica. Registration
does the same first, so such a version never gets a number. It runs in a child
process because loading imports the project's code: the control plane never
imports bundle code, and the child gets no store credential (the parent's
``HARBOURMASTER_*`` settings are not passed on) and only a copy of the bundle.

On Linux the child is forked from a warm-up server (bundle/warmup_server.py) that has
imported the libraries once and is itself started clean; elsewhere, or when the server
cannot start, it is a new interpreter: ``python -m harbourmaster.bundle.warmup`` with a
JSON request on stdin.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harbourmaster.bundle.builder import Bundle
from harbourmaster.config import Settings
from harbourmaster.errors import InvalidInputError

__all__ = ["start_warmup_server", "warm", "warm_in_clean_process"]

log = logging.getLogger("harbourmaster.warmup")

_SECRET_PREFIXES = ("HARBOURMASTER_", "AWS_", "AZURE_", "GOOGLE_", "PG")
_OUTPUT_LIMIT = 2000  # characters of the child's error kept in the refusal


def warm_in_clean_process(
    bundle: Bundle, settings: Settings, trusted_types: Sequence[str], project: str, timeout: float | None = None
) -> dict[str, Any]:
    """Load ``bundle`` and predict its reference row in a child process; the child's report (engine).

    Raises InvalidInputError naming the error when it cannot load, answer, or finish within ``timeout``
    seconds (default ``settings.warmup_timeout_seconds``).
    """
    from harbourmaster.bundle.storage import save_bundle
    from harbourmaster.store.artifacts import ArtifactStore

    deadline = settings.warmup_timeout_seconds if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="hm-warmup-") as folder:
        home = Path(folder)
        save_bundle(ArtifactStore(str(home / "artifacts")), bundle)
        request = {
            "home": str(home),
            "digest": bundle.digest,
            "trusted_type_prefixes": list(settings.trusted_type_prefixes),
            "trust_pickle": settings.trust_pickle,
            "extra_trusted_types": list(trusted_types),
        }
        server = _fork_server()
        if server is not None:
            report = server.warm(request, deadline)
            if report is not None:
                return _checked(report, project)
        report = _warm_in_new_interpreter(request, folder, deadline)
    return _checked(report, project)


def _timed_out(project: str, deadline: float) -> InvalidInputError:
    return InvalidInputError(
        f"{project}: the new version did not load and answer one row within {deadline:g} s (a replica would refuse it)",
        "make loading and predicting faster, or raise HARBOURMASTER_WARMUP_TIMEOUT_SECONDS on the control plane",
    )


def _checked(report: dict[str, Any], project: str) -> dict[str, Any]:
    if report.get("timed_out"):
        raise _timed_out(project, report["timed_out"])
    if not report.get("ok"):
        raise InvalidInputError(
            f"{project}: the new version does not load and answer one row, so no replica could serve it: "
            f"{report.get('error') or 'the warm-up process ended without an answer'}",
            report.get("hint")
            or "try it locally: harbourmaster.Client().load(...) on the bundle, or fix the training code",
        )
    return report


def _warm_in_new_interpreter(request: dict[str, Any], folder: str, deadline: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harbourmaster.bundle.warmup"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=deadline,
            env=_clean_environment(),
            cwd=folder,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "timed_out": deadline}
    report = _report(done.stdout)
    if done.returncode != 0 or not report.get("ok"):
        error = report.get("error") or (done.stderr.strip()[-_OUTPUT_LIMIT:] or f"exit status {done.returncode}")
        return {"ok": False, "error": error, "hint": report.get("hint")}
    return report


class _ForkServer:
    """The parent's handle on its warm-up fork server: started once, restarted if it died."""

    _START_TIMEOUT = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._failed = False

    def warm(self, request: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The child's report; None when the server is not available (the caller falls back)."""
        socket_path = self._running()
        if socket_path is None:
            return None
        pid: int | None = None
        end = time.monotonic() + deadline
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(deadline)
                connection.connect(socket_path)
                stream = connection.makefile("rwb")
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                pid = json.loads(stream.readline())["pid"]
                connection.settimeout(max(0.001, end - time.monotonic()))
                line = stream.readline()
        except TimeoutError:
            if pid is not None:
                _kill(pid)
            return {"ok": False, "timed_out": deadline}
        except (OSError, ValueError, KeyError):
            if pid is None:
                return None  # the server is gone: a new interpreter does this one
            line = b""
        report = _report(line.decode(errors="replace"))
        if not report:
            output = Path(request["home"]) / "output.txt"
            tail = output.read_text(errors="replace").strip()[-_OUTPUT_LIMIT:] if output.exists() else ""
            return {"ok": False, "error": tail or "the warm-up process died without an answer"}
        return report

    def start(self) -> None:
        """Start the server if it is not running (what the first warm-up would do)."""
        self._running()

    def _running(self) -> str | None:
        with self._lock:
            if self._failed:
                return None
            if self._process is not None and self._process.poll() is None and self._folder is not None:
                return str(Path(self._folder.name) / "socket")
            return self._start()

    def _start(self) -> str | None:
        self._stop()
        self._folder = tempfile.TemporaryDirectory(prefix="hm-warmup-server-")
        socket_path = str(Path(self._folder.name) / "socket")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "harbourmaster.bundle.warmup_server", socket_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_clean_environment(),
                cwd=self._folder.name,
            )
            assert self._process.stdout is not None
            ready, _, _ = select.select([self._process.stdout], [], [], self._START_TIMEOUT)
            if not ready or self._process.stdout.readline().strip() != b"ready":
                raise OSError("the warm-up server did not start")
        except OSError as exc:
            log.warning("warm-up server unavailable, each warm-up starts a new interpreter: %s", exc)
            self._stop()
            self._failed = True
            return None
        return socket_path

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def close(self) -> None:
        with self._lock:
            self._stop()


def start_warmup_server() -> None:
    """Start the warm-up fork server now, in the background, for a process about to register versions: its
    imports (seconds) overlap the caller's own work instead of delaying the first registration. A no-op
    where there is no fork server; the first warm-up waits for the start if it is still under way."""
    server = _fork_server()
    if server is not None:
        threading.Thread(target=server.start, name="hm-warmup-start", daemon=True).start()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_SERVER: _ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def _fork_server() -> _ForkServer | None:
    global _SERVER
    if not sys.platform.startswith("linux") or os.environ.get("HARBOURMASTER_WARMUP_FORK_SERVER") == "0":
        return None
    with _SERVER_LOCK:
        if _SERVER is None:
            _SERVER = _ForkServer()
            atexit.register(_SERVER.close)
        return _SERVER


def _clean_environment() -> dict[str, str]:
    """The parent's environment without credentials or platform settings (paths and locale stay)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(_SECRET_PREFIXES)}


def _report(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def warm(request: dict[str, Any]) -> dict[str, Any]:
    """In the child: load the bundle as a replica does and predict its reference row."""
    from harbourmaster.bundle.predictor import Predictor
    from harbourmaster.bundle.storage import load_bundle
    from harbourmaster.errors import HarbourmasterError
    from harbourmaster.store.artifacts import ArtifactStore

    home = Path(request["home"])
    settings = Settings(
        home=home,
        database_url="sqlite://",  # never opened: the child has no store
        artifacts_url=str(home / "artifacts"),
        trusted_type_prefixes=tuple(request["trusted_type_prefixes"]),
        trust_pickle=bool(request["trust_pickle"]),
    )
    try:
        loaded = load_bundle(
            ArtifactStore(settings.artifacts_url), request["digest"], settings, request["extra_trusted_types"]
        )
        predictor = Predictor(0, loaded)
        predictor.warm()
    except HarbourmasterError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint}
    except Exception as exc:  # the model's own code failed: that is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:_OUTPUT_LIMIT]}
    return {"ok": True, "engine": predictor.engine}


def main() -> None:
    report = warm(json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0 if report["ok"] else 1)  # no waiting on threads the model's code may have left behind


if __name__ == "__main__":
    main()
