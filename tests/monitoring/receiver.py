"""A real webhook receiver on 127.0.0.1 for notifier tests: it can fail its first attempts,
answer 500 always, or take longer than the notifier's timeout; it records every request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    key: str
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    url: str
    fail_first: int = 0  # answer 500 to this many requests, then 200
    always_status: int | None = None  # answer this status to every request
    delay: float = 0.0  # seconds to wait before answering
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, seconds: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(self.accepted()) >= count:
                break
            time.sleep(0.05)
        return self.accepted()


@contextmanager
def webhook_receiver(**behaviour: Any) -> Iterator[Receiver]:
    receiver = Receiver(url="", **behaviour)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            with receiver.lock:
                seen = len(receiver.requests)
                status = receiver.always_status or (500 if seen < receiver.fail_first else 200)
                receiver.requests.append(Received(self.headers.get("Idempotency-Key", ""), body, status))
            if receiver.delay:
                time.sleep(receiver.delay)
            payload = b'{"ok": true}' if status < 300 else b'{"error": "receiver failing on purpose"}'
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the notifier gave up waiting (the timeout case)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/secret-part"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
