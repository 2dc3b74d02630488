"""Running replicas: under uvicorn in the foreground (``harbourmaster serve``) or in a thread (tests, demo)."""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from harbourmaster.errors import InvalidInputError
from harbourmaster.serving.app import ServingApp
from harbourmaster.serving.control_plane import ControlPlane, EmbeddedControlPlane, RemoteControlPlane
from harbourmaster.serving.replica import Replica, ReplicaOptions

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

# A serving process hands the GIL over after 0.5 ms instead of Python's 5 ms: the replica's
# background threads (reconcile poll, heartbeat, capture writer) then delay a request by at most
# that much. Measured on the breast-cancer replica, 3 interleaved runs each: p99 at 8 connections
# 8.4 -> 6.2 ms, at 1 connection 3.8 -> 2.5 ms, same throughput.
SWITCH_INTERVAL = 0.0005

WORKER_HEALTHCHECK_SECONDS = 60
ENV_VAR = "HARBOURMASTER_SERVE_ENVIRONMENT"
ADDRESS_VAR = "HARBOURMASTER_SERVE_ADDRESS"
URL_VAR = "HARBOURMASTER_SERVE_CONTROL_PLANE"  # workers of `serve --url`: the control plane's URL
TOKEN_VAR = "HARBOURMASTER_TOKEN"
# What a replica started with --url never opens; dropped from its environment so model code does not see them.
STORE_VARS = ("HARBOURMASTER_DATABASE_URL", "HARBOURMASTER_ARTIFACTS_URL")
LOAD_TIMEOUT_VAR = "HARBOURMASTER_SERVE_LOAD_TIMEOUT_SECONDS"
START_TIMEOUT_VAR = "HARBOURMASTER_SERVE_START_TIMEOUT_SECONDS"


def create_app(
    source: Platform | ControlPlane, environment: str, options: ReplicaOptions | None = None, address: str = ""
) -> ServingApp:
    """The ASGI app of a new replica (started and stopped by the server's lifespan).

    ``source`` is a control plane, or a local platform (embedded mode: the sandbox)."""
    control_plane = source if isinstance(source, ControlPlane) else EmbeddedControlPlane(source, environment)
    return ServingApp(Replica(control_plane, environment, options, address=address))


def control_plane_for(environment: str, url: str | None, token: str | None) -> ControlPlane:
    """The control plane of a replica process: over HTTP with ``url``, else the embedded store."""
    if url:
        return RemoteControlPlane(url, token, environment)
    from harbourmaster.services.platform import Platform

    return EmbeddedControlPlane(Platform(), environment)


def drop_store_credentials() -> list[str]:
    """Remove database/artifact-store settings from this process's environment; returns the names removed."""
    return [name for name in STORE_VARS if os.environ.pop(name, None) is not None]


def app_from_env() -> ServingApp:
    """uvicorn factory for worker processes: settings and environment come from the environment."""
    sys.setswitchinterval(SWITCH_INTERVAL)  # a worker process is ours: process-wide tuning applies
    environment = os.environ[ENV_VAR]
    control_plane = control_plane_for(environment, os.environ.get(URL_VAR), os.environ.get(TOKEN_VAR))
    return create_app(control_plane, environment, options_from_env(), address=os.environ.get(ADDRESS_VAR, ""))


def options_from_env(env: dict[str, str] | None = None) -> ReplicaOptions:
    """The options of a replica that owns its process, with the deadlines of ``HARBOURMASTER_SERVE_*`` if set."""
    env = dict(os.environ) if env is None else env
    deadlines: dict[str, Any] = {}
    for field, name in (("load_timeout_seconds", LOAD_TIMEOUT_VAR), ("start_timeout_seconds", START_TIMEOUT_VAR)):
        value = env.get(name)
        if value:
            try:
                deadlines[field] = float(value)
            except ValueError:
                raise InvalidInputError(f"{name}={value!r} is not a number of seconds", f"e.g. {name}=120") from None
    return ReplicaOptions(own_process=True, **deadlines)


def _set_nodelay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):  # not TCP (a Unix socket): nothing to do
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CoalescingTransport:
    """A transport that joins the writes of one turn of the event loop into one ``write``.

    uvicorn writes a response's head and its body separately: two ``send`` system calls and, with
    TCP_NODELAY, two segments per answer. Writes are collected and handed to the real transport once,
    when the response is complete (``flush``, called by the protocol), else by a callback queued at the
    first write (the next turn of the loop: a streamed body, a HEAD answer); ``close`` sends what is
    pending first. Everything else is the real transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what was written so far to the real transport."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size()) + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class H11NoDelay(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on every accepted socket."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        _set_nodelay(transport)
        super().connection_made(transport)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsNoDelay(HttpToolsProtocol):
        """uvicorn's httptools protocol with TCP_NODELAY set on every accepted socket, and each response's
        head and body written at once (``CoalescingTransport``)."""

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            _set_nodelay(transport)
            super().connection_made(CoalescingTransport(transport, self.loop))

        def on_response_complete(self) -> None:
            self.transport.flush()  # the whole answer is written: send it now, in one write
            super().on_response_complete()

    HTTP_PROTOCOL: type = HttpToolsNoDelay
except ImportError:  # httptools missing: the pure-Python parser
    HTTP_PROTOCOL = H11NoDelay

# Why TCP_NODELAY explicitly: asyncio sets it only on sockets created with proto=IPPROTO_TCP,
# and uvicorn's multi-worker mode binds its listening socket with proto=0, so accepted sockets
# kept Nagle's algorithm on; with the response head and body sent in two writes, every keep-alive
# answer then waited for the client's delayed ACK (~40 ms). uvloop sets it itself; we do not
# rely on uvloop being installed.


def uvicorn_config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=extra.pop("http", HTTP_PROTOCOL),
        lifespan="on",
        access_log=False,
        log_level=extra.pop("log_level", "warning"),
        timeout_graceful_shutdown=extra.pop("timeout_graceful_shutdown", 30),
        **extra,
    )


def serve(
    environment: str,
    host: str = "127.0.0.1",
    port: int = 8800,
    workers: int = 1,
    log_level: str = "info",
    url: str | None = None,
    token: str | None = None,
) -> None:
    """Serve one environment in the foreground until SIGTERM/SIGINT (which drain and flush).

    With ``url`` the replica reaches state only through that control plane with ``token``
    (a replica credential) and never opens a database or artifact store itself."""
    address = f"http://{host}:{port}"
    sys.setswitchinterval(SWITCH_INTERVAL)  # this process is ours: process-wide tuning applies
    if workers <= 1:
        control_plane = control_plane_for(environment, url, token)
        app = create_app(control_plane, environment, options_from_env(), address=address)
        uvicorn.Server(uvicorn_config(app, host, port, log_level=log_level)).run()
        control_plane.close()
        if isinstance(control_plane, EmbeddedControlPlane):
            control_plane.platform.close()
        return
    os.environ[ENV_VAR] = environment
    os.environ[ADDRESS_VAR] = address
    if url:
        os.environ[URL_VAR] = url
        if token:
            os.environ[TOKEN_VAR] = token
    uvicorn.run(
        "harbourmaster.serving.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=HTTP_PROTOCOL,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        **_worker_healthcheck(),
    )


def _worker_healthcheck() -> dict[str, Any]:
    """A generous health-check timeout for worker processes (uvicorn >= 0.30 has the setting).

    uvicorn's supervisor pings each worker and replaces one that does not answer in 5 s; a worker
    still importing libraries or loading models on a busy machine could miss that and be killed
    again and again (a restart loop). A worker that started listens within ``start_timeout_seconds``.
    """
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        return {"timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS}
    return {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A replica under uvicorn in a background thread, on a loopback port (tests and the demo)."""

    def __init__(
        self,
        source: Platform | ControlPlane,
        environment: str,
        options: ReplicaOptions | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(source, environment, options, address=self.url)
        self.replica = self.app.replica
        self.server = uvicorn.Server(uvicorn_config(self.app, "127.0.0.1", self.port))
        self._thread = threading.Thread(target=self.server.run, name=f"hm-serve-{self.port}", daemon=True)

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: in-flight requests finish, the prediction log is flushed."""
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
