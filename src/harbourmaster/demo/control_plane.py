"""A real control plane for the demo's governance chapter: its own shared store, the
HTTP API under uvicorn on a free loopback port, and tokens minted through it."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from harbourmaster.api.app import create_app
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform
from harbourmaster.services.replicas import SAMPLE_VAR
from harbourmaster.services.sandbox import init_store

START_SECONDS = 20.0
STOP_SECONDS = 15.0


class DemoControlPlane:
    """``harbourmaster init`` + ``harbourmaster server`` on a fresh store in ``home``, in a thread.

    The store is recreated on every run, so its first admin (``admin``) and tokens are new each time;
    the admin's token is kept in ``home/admin-token`` (readable by its owner only) to go on afterwards.
    """

    def __init__(self, home: Path, admin: str = "root", second_admin: str = "sam") -> None:
        self.home = home
        self.admin = admin
        self.second_admin = second_admin  # separation of duties: confirms what the first one hands out
        self.second_admin_token = ""
        # The monitors judge drift at every pass (the demo runs them by hand, as `harbourmaster monitor --once`).
        self.settings = Settings.from_env({"HARBOURMASTER_HOME": str(home), "HARBOURMASTER_DRIFT_EVERY": "0"})
        self.url = ""
        self.admin_token = ""
        self._platform: Platform | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def platform(self) -> Platform:
        """The server's own platform (for what runs inside the control plane: its prediction log, its rollout
        controller)."""
        if self._platform is None:
            raise RuntimeError("the demo's control plane is not running")
        return self._platform

    @property
    def token_file(self) -> Path:
        return self.home / "admin-token"

    def start(self) -> DemoControlPlane:
        if self.home.exists():
            shutil.rmtree(self.home)
        [issued, second], _ = init_store(self.settings, [self.admin, self.second_admin])
        self.admin_token = issued.secret
        self.second_admin_token = second.secret
        self.token_file.write_text(issued.secret + "\n")
        self.token_file.chmod(0o600)
        # The lifecycle chapter's canary bakes for seconds: keep a traffic sample every second, not every 15 s.
        os.environ.setdefault(SAMPLE_VAR, "1")
        self._platform = Platform(self.settings)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(create_app(self._platform), host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="demo-control-plane", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo's control plane did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_SECONDS)
        if self._platform is not None:
            self._platform.close()
            self._platform = None

    def __enter__(self) -> DemoControlPlane:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
