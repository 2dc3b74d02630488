"""How a replica reaches state: one small interface, embedded (the sandbox) or over HTTP (production).

``RemoteControlPlane`` holds only a replica credential for one environment and the
control plane's URL: no database URL, no artifact-store credential. It keeps the
last desired state and every bundle it loaded (verified against its digest) on
local disk, so a replica started while the control plane is away serves what it
served before (static stability) and picks up changes when it returns.
``EmbeddedControlPlane`` calls the services of a local ``Platform`` directly.
Both answer client-token checks through one bounded cache (allowed and refused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.manifest import BundleManifest
from harbourmaster.bundle.storage import load_bundle, save_bundle
from harbourmaster.config import Settings
from harbourmaster.errors import BundleIntegrityError, ConnectionFailedError, HarbourmasterError
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import DesiredState, TokenDecision
from harbourmaster.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.serving.control_plane")

ALLOWED_TTL_SECONDS = 30.0
REFUSED_TTL_SECONDS = 10.0
TOKEN_CACHE_LIMIT = 10_000


@runtime_checkable
class ControlPlane(Protocol):
    """Everything a replica (or a batch scorer) needs from the control plane, for one environment."""

    environment: str
    settings: Settings  # the local home: caches and trust settings (never a database)

    def desired_state(self) -> DesiredState: ...

    def load_bundle(self, project: str, digest: str, trusted_types: Sequence[str] = ()) -> LoadedBundle: ...

    def heartbeat(self, replica_id: str, **fields: Any) -> None: ...

    def put_predictions(self, key: str, data: bytes) -> None: ...

    def knows_token(self, token: str) -> bool: ...

    def check_token(self, token: str, address: str | None) -> str: ...

    def feedback(
        self,
        project: str,
        items: list[tuple[str, int, Any]],
        caller: str | None = None,
        *,
        classes: Iterable[Any] | None = None,
        answered: dict[str, int] | None = None,
    ) -> int: ...

    def report_refusals(self, tallies: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class TokenDecisions:
    """A bounded LRU of recent client-token decisions: allowed ones for 30 s, refused ones for 10 s."""

    def __init__(self, limit: int = TOKEN_CACHE_LIMIT) -> None:
        self._limit = limit
        self._entries: OrderedDict[str, tuple[float, TokenDecision]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, token: str) -> TokenDecision | None:
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, token: str, decision: TokenDecision) -> None:
        ttl = ALLOWED_TTL_SECONDS if decision.allowed else REFUSED_TTL_SECONDS
        key = self._key(token)
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, decision)
            self._entries.move_to_end(key)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class _TokenChecks:
    """``check_token`` for both kinds: the cache first, then the control plane's decision."""

    def __init__(self) -> None:
        self.token_decisions = TokenDecisions()

    def _decide(self, token: str, address: str | None) -> TokenDecision:
        raise NotImplementedError

    def knows_token(self, token: str) -> bool:
        """Whether ``check_token`` answers from the cache (no call to the control plane)."""
        return self.token_decisions.get(token) is not None

    def check_token(self, token: str, address: str | None) -> str:
        """The client's name if its token may predict here; raises its 401/403 error otherwise."""
        decision = self.token_decisions.get(token)
        if decision is None:
            decision = self._decide(token, address)  # an unreachable control plane raises: nothing cached
            self.token_decisions.put(token, decision)
        if decision.allowed:
            return decision.caller or ""
        raise decision.error()


class EmbeddedControlPlane(_TokenChecks):
    """The sandbox: the services of a local platform, called in-process."""

    def __init__(self, platform: Platform, environment: str) -> None:
        super().__init__()
        platform.environments.get(environment)  # an unknown environment fails here, with a hint
        self.platform = platform
        self.environment = environment
        self.settings = platform.settings
        self.actor = Actor.system(f"replica:{environment}")

    def desired_state(self) -> DesiredState:
        return self.platform.dataplane.desired_state(self.actor, self.environment)

    def load_bundle(self, project: str, digest: str, trusted_types: Sequence[str] = ()) -> LoadedBundle:
        return self.platform.registry.load_digest(self.actor, project, digest)

    def heartbeat(self, replica_id: str, **fields: Any) -> None:
        self.platform.dataplane.heartbeat(self.actor, self.environment, replica_id, **fields)

    def put_predictions(self, key: str, data: bytes) -> None:
        self.platform.dataplane.store_predictions(self.actor, self.environment, key, data)

    def _decide(self, token: str, address: str | None) -> TokenDecision:
        return self.platform.dataplane.authorize_prediction(self.actor, self.environment, token, address)

    def feedback(
        self,
        project: str,
        items: list[tuple[str, int, Any]],
        caller: str | None = None,
        *,
        classes: Iterable[Any] | None = None,
        answered: dict[str, int] | None = None,
    ) -> int:
        return self.platform.dataplane.feedback(
            self.actor, self.environment, project, items, caller, classes=classes, answered=answered
        )

    def report_refusals(self, tallies: list[dict[str, Any]]) -> None:
        self.platform.dataplane.record_refusals(self.actor, self.environment, tallies)

    def close(self) -> None:
        """The platform belongs to whoever made it."""


class RemoteControlPlane(_TokenChecks):
    """The control plane's HTTP API with a replica credential, and a local cache for static stability."""

    def __init__(
        self,
        url: str,
        token: str | None,
        environment: str,
        settings: Settings | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__()
        from harbourmaster.client import _Remote  # the SDK's transport: errors come back as their classes

        self.url = url.rstrip("/")
        self.environment = environment
        self.settings = settings or Settings.from_env()
        self._http = _Remote(self.url, token, httpx.Timeout(timeout, connect=min(timeout, 3.0)))
        self._prefix = f"/dataplane/{quote(environment, safe='')}"
        place = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        self.cache_dir = self.settings.cache_dir / "dataplane" / place / environment
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._bundles = ArtifactStore(str(self.cache_dir / "bundles"))
        self._state: DesiredState | None = None
        self.reachable: bool | None = None  # None until the first call

    # -- desired state ------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.cache_dir / "state.json"

    def desired_state(self) -> DesiredState:
        """The control plane's answer (remembered on disk), or the last one known while it is away."""
        try:
            raw = self._http.get(f"{self._prefix}/state")
        except HarbourmasterError as exc:
            if not _unreachable(exc):
                raise
            return self._last_known(exc)
        state = DesiredState.model_validate(raw)
        self._connected()
        if state != self._state:
            _write_atomically(self._state_file, state.model_dump_json().encode())
            self._state = state
        return state

    def _last_known(self, exc: HarbourmasterError) -> DesiredState:
        if self.reachable is not False:
            log.warning("control plane %s unreachable (%s); serving the last known desired state", self.url, exc)
        self.reachable = False
        if self._state is None and self._state_file.exists():
            try:
                self._state = DesiredState.model_validate_json(self._state_file.read_bytes())
            except (ValidationError, OSError) as bad:
                log.error("the cached desired state %s cannot be read: %s", self._state_file, bad)
        if self._state is None:
            raise ConnectionFailedError(
                f"the control plane at {self.url} is unreachable and no desired state of {self.environment} "
                "is cached here",
                "start the control plane (harbourmaster server) or check --url; the replica retries",
            ) from exc
        return self._state

    def _connected(self) -> None:
        if self.reachable is False:
            log.warning("control plane %s reachable again", self.url)
        self.reachable = True

    # -- bundles ----------------------------------------------------------------------

    def load_bundle(self, project: str, digest: str, trusted_types: Sequence[str] = ()) -> LoadedBundle:
        """Load from the verified local copy; download (and verify) it first when missing or damaged."""
        settings = self._loading_settings()
        try:
            return load_bundle(self._bundles, digest, settings, extra_trusted_types=trusted_types)
        except BundleIntegrityError as exc:
            log.info("bundle %s not in the local cache (%s): downloading it", digest[:12], exc.message)
        self._download(digest)
        return load_bundle(self._bundles, digest, settings, extra_trusted_types=trusted_types)

    def _loading_settings(self) -> Settings:
        """This replica's settings plus the control plane's trusted types (what registration checked against)."""
        platform = self._state.platform_trusted_types if self._state is not None else []
        prefixes = tuple(dict.fromkeys([*self.settings.trusted_type_prefixes, *platform]))
        return dataclasses.replace(self.settings, trusted_type_prefixes=prefixes)

    def _download(self, digest: str) -> None:
        base = f"{self._prefix}/bundles/{digest}"
        manifest = BundleManifest.model_validate(self._http.get(f"{base}/manifest"))
        if manifest.digest() != digest:
            raise BundleIntegrityError(
                f"the control plane sent a manifest of {manifest.digest()[:12]} for bundle {digest[:12]}",
                "check that --url points at your control plane",
            )
        files = {path: self._http.get_bytes(f"{base}/files/{quote(path)}") for path in manifest.files}
        save_bundle(self._bundles, Bundle(manifest=manifest, files=files))  # verifies every file's sha256
        self._connected()

    # -- writes ------------------------------------------------------------------------

    def heartbeat(self, replica_id: str, **fields: Any) -> None:
        self._http.post(f"{self._prefix}/heartbeats", json={"replica": replica_id, **fields})
        self._connected()

    def put_predictions(self, key: str, data: bytes) -> None:
        """Upload one captured Parquet file; an error leaves the rows with the capture writer for a retry."""
        headers = {"content-type": "application/octet-stream"}
        self._http.post(f"{self._prefix}/predictions", params={"key": key}, content=data, headers=headers)

    def _decide(self, token: str, address: str | None) -> TokenDecision:
        try:
            raw = self._http.post(f"{self._prefix}/authorize", json={"token": token, "address": address})
        except HarbourmasterError as exc:
            raise ConnectionFailedError(
                f"cannot check the token: the control plane answered {exc.message}",
                "retry shortly; the replica's operator should check its replica credential and --url",
            ) from exc
        return TokenDecision.model_validate(raw)

    def feedback(
        self,
        project: str,
        items: list[tuple[str, int, Any]],
        caller: str | None = None,
        *,
        classes: Iterable[Any] | None = None,
        answered: dict[str, int] | None = None,
    ) -> int:
        body: dict[str, Any] = {
            "feedback": [{"request_id": rid, "row": row, "value": value} for rid, row, value in items],
            "caller": caller,
            "classes": sorted(classes, key=str) if classes is not None else None,
            "answered": answered or {},
        }
        return int(self._http.post(f"{self._prefix}/feedback/{quote(project, safe='')}", json=body)["stored"])

    def record_score_run(self, project: str, outcome: dict[str, Any]) -> dict[str, Any]:
        return self._http.post(f"{self._prefix}/runs", json={"project": project, **outcome})

    def report_refusals(self, tallies: list[dict[str, Any]]) -> None:
        self._http.post(f"{self._prefix}/refusals", json={"refusals": tallies})

    def close(self) -> None:
        self._http.close()


def _unreachable(exc: HarbourmasterError) -> bool:
    """Transport errors and 5xx: the control plane is away (a 4xx is an answer)."""
    return isinstance(exc, ConnectionFailedError) or getattr(exc, "http_status", 500) >= 500


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
