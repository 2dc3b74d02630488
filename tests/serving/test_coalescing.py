"""The replica's HTTP protocol writes a response's head and body at once, and loses nothing doing so."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from harbourmaster.serving.server import HTTP_PROTOCOL, uvicorn_config

pytestmark = pytest.mark.skipif(HTTP_PROTOCOL.__name__ != "HttpToolsNoDelay", reason="httptools is not installed")


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["path"] == "/stream":  # three chunks, a turn of the loop apart
        await send({"type": "http.response.start", "status": 200, "headers": [(b"transfer-encoding", b"chunked")]})
        for part in (b"one,", b"two,"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"three"})
        return
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def server(writes: list[int]) -> Iterator[int]:
    class Counting(HTTP_PROTOCOL):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            real_write = transport.write

            class Seen:  # the real transport, its writes counted
                def write(self, data: bytes) -> None:
                    writes.append(len(data))
                    real_write(data)

                def __getattr__(self, name: str) -> Any:
                    return getattr(transport, name)

            super().connection_made(Seen())

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    instance = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, http=Counting))
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not instance.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield port
    finally:
        instance.should_exit = True
        thread.join(30)
        listener.close()


def exchange(port: int, request: bytes, until: bytes, close: bool = False) -> bytes:
    """Send ``request``; read until ``until`` arrived (or, with ``close``, until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        data = b""
        while close or until not in data:
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_head_and_body_leave_in_one_write_and_every_response_arrives() -> None:
    writes: list[int] = []
    with server(writes) as port:
        one = exchange(port, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n", b"/first")
        assert one.startswith(b"HTTP/1.1 200") and one.endswith(b"\r\n\r\n/first")
        assert len(writes) == 1 and writes[0] == len(one)  # one write: head and body together
        # pipelined requests: both answered, in order
        two = exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n/b")
        assert two.index(b"\r\n\r\n/a") < two.index(b"\r\n\r\n/b")
        # a streamed body: each turn's writes leave together, nothing is held back
        stream = exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
        assert b"one," in stream and b"two," in stream and b"three" in stream
        # HEAD (no body written) and Connection: close (written, then closed) are not held back either
        head = exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
        closed = exchange(port, b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"/bye", close=True)
        assert closed.endswith(b"\r\n\r\n/bye")
