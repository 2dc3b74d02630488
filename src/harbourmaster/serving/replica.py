"""A serving replica: reconciles toward the desired state, serves from an immutable routing table.

Background threads (never the request path) poll the control plane for the
desired state, load + verify + warm new versions and swap the routing table in
one reference assignment; send heartbeats; hand captured predictions to the
control plane. All state goes through one ``ControlPlane`` (serving/control_plane.py):
embedded in the sandbox, over HTTP with a replica credential in production, so a
replica (and the model code it runs) holds no database or artifact-store credential.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harbourmaster.bundle.code import project_imports
from harbourmaster.bundle.predictor import Predictor
from harbourmaster.core.fallback import DeploymentOptions, FallbackConfig
from harbourmaster.core.validation import Validator
from harbourmaster.errors import HarbourmasterError
from harbourmaster.schemas import DeploymentState, VersionPointer
from harbourmaster.serving.capture import CaptureWriter
from harbourmaster.serving.control_plane import ControlPlane
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.serving.microbatch import Microbatcher
from harbourmaster.serving.router import Link, ProjectRoute, RoutingTable, humility_for

log = logging.getLogger("harbourmaster.serving")

RETRY_FAILED_AFTER = 30.0


@dataclass
class ReplicaOptions:
    """Tunables of one replica."""

    poll_seconds: float = 1.0
    heartbeat_seconds: float = 5.0
    capture_queue: int = 100_000
    capture_batch_rows: int = 5_000
    capture_flush_seconds: float = 1.0
    capture_spool_bytes: int = 2 << 30  # the local write-ahead spool's bound (see serving/spool.py)
    capture_fsync_seconds: float = 0.2  # group commit: the spool's fdatasync interval
    max_body_bytes: int = 8 * 1024 * 1024
    use_onnx: bool = True
    predict_threads: int = 4


class Replica:
    """The state of one serving replica of one environment."""

    def __init__(
        self,
        control_plane: ControlPlane,
        environment: str | None = None,
        options: ReplicaOptions | None = None,
        address: str = "",
    ) -> None:
        if environment is not None and environment != control_plane.environment:
            raise ValueError(f"the control plane serves {control_plane.environment}, not {environment}")
        self.control_plane = control_plane
        self.environment = control_plane.environment
        self.options = options or ReplicaOptions()
        self.address = address
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.metrics = ServingMetrics(self.environment)
        self.capture = CaptureWriter(
            None,
            self.metrics,
            sink=control_plane.put_predictions,
            spool_dir=Path(control_plane.settings.cache_dir) / "spool" / self.environment,
            environment=self.environment,
            replica=self.id,
            max_queue=self.options.capture_queue,
            batch_rows=self.options.capture_batch_rows,
            flush_seconds=self.options.capture_flush_seconds,
            spool_bytes=self.options.capture_spool_bytes,
            fsync_seconds=self.options.capture_fsync_seconds,
        )
        self.pool = ThreadPoolExecutor(self.options.predict_threads, thread_name_prefix="hm-predict")
        self.shadow_pool = ThreadPoolExecutor(1, thread_name_prefix="hm-shadow")
        self.shadow_pending = 0
        self.table = RoutingTable()
        self.guarded = False
        self.failures: dict[str, dict[str, Any]] = {}
        self._predictors: dict[str, Predictor] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self._started = False
        self._trusted: dict[str, list[str]] = {}

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """First reconcile (synchronously, so a fresh replica is ready when it listens), then loops."""
        if self._started:
            return
        self._started = True
        try:
            self.reconcile()
        except Exception:
            log.exception("first reconcile failed; retrying in the background")
        self._try_heartbeat("alive")
        for name, target in (("hm-reconcile", self._reconcile_loop), ("hm-heartbeat", self._heartbeat_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop polling, finish shadow work, flush the prediction log, say goodbye in the store."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.shadow_pool.shutdown(wait=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.capture.close()
        self._try_heartbeat("stopped")

    # -- reconciling ---------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.options.poll_seconds):
            try:
                self.reconcile()
            except HarbourmasterError as exc:
                log.warning("reconcile failed, keeping the current routing table: %s", exc.message)
            except Exception:
                log.exception("reconcile failed; keeping the current routing table")

    def reconcile(self) -> bool:
        """Bring the routing table to the desired state; True when it changed."""
        desired = self.control_plane.desired_state()  # the last known one while the control plane is away
        self.guarded = bool(desired.environment.config.guarded)
        self._trusted = desired.trusted_types
        states = {state.project: state for state in desired.deployments}
        current = self.table
        routes = dict(current.routes)
        changed = False
        for project in list(routes):
            if project not in states:
                del routes[project]
                changed = True
        for project, state in states.items():
            revision = state.revision
            route = routes.get(project)
            if route is not None and route.revision == revision:
                continue
            failed = self.failures.get(project)
            if failed and failed["revision"] == revision and time.monotonic() - failed["at"] < RETRY_FAILED_AFTER:
                continue
            if state.champion is None:
                if routes.pop(project, None) is not None:
                    changed = True
                continue
            try:
                routes[project] = self._build(state)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                log.error("%s revision %s refused, keeping what is served: %s", project, revision, message)
                self.metrics.reconcile_failures.labels(self.environment, project).inc()
                self.failures[project] = {"revision": revision, "at": time.monotonic(), "error": message}
                continue
            self.failures.pop(project, None)
            changed = True
        if changed or not current.ready:
            self.table = RoutingTable(routes=routes, ready=True)  # the atomic swap
            self._forget_unused()
            _settle_heap()
            self.metrics.set_loaded(
                [
                    (route.project, link.predictor.number, link.role, link.predictor.engine)
                    for route in routes.values()
                    for link in route.predictors()
                ]
            )
        return changed

    def _predictor(self, project: str, pointer: VersionPointer) -> Predictor:
        predictor = self._predictors.get(pointer.digest)
        if predictor is None:
            trusted = self._trusted.get(project, ())
            bundle = self.control_plane.load_bundle(project, pointer.digest, trusted)
            predictor = Predictor(pointer.number, bundle, use_onnx=self.options.use_onnx)
            predictor.warm()
            self._predictors[pointer.digest] = predictor
        return predictor

    def _link(self, role: str, project: str, pointer: VersionPointer, options: DeploymentOptions) -> Link:
        predictor = self._predictor(project, pointer)
        batcher = None
        if options.microbatch.enabled:
            batching = options.microbatch
            observe = self.metrics.batch_observer(project, predictor.number)
            batcher = Microbatcher(predictor, batching.max_batch, batching.max_wait_ms, observe)
        return Link(role, predictor, humility_for(predictor, options), batcher)

    def _build(self, state: DeploymentState) -> ProjectRoute:
        assert state.champion is not None
        options = DeploymentOptions.model_validate(state.options or {})
        fallback = FallbackConfig.model_validate(state.fallback or {})
        champion = self._link("champion", state.project, state.champion, options)
        challenger = (
            self._link("challenger", state.project, state.challenger.version, options) if state.challenger else None
        )
        failover = self._link("failover", state.project, state.failover, options) if state.failover else None
        function = self._fallback_function(champion.predictor, fallback.function) if fallback.function else None
        return ProjectRoute(
            state=state,
            options=options,
            validator=Validator(champion.predictor.bundle.manifest.input_schema, options.unknown_fields),
            champion=champion,
            challenger=challenger,
            challenger_mode=state.challenger.mode if state.challenger else None,
            failover=failover,
            fallback=fallback,
            fallback_function=function,
        )

    def _fallback_function(self, predictor: Predictor, entrypoint: str) -> Callable[..., Any]:
        module_name, _, name = entrypoint.partition(":")
        manifest = predictor.bundle.manifest
        code_dir = Path(self.control_plane.settings.cache_dir) / "bundles" / predictor.digest / "code"
        with project_imports(code_dir, manifest.code_modules):
            function = getattr(importlib.import_module(module_name), name)
        if not callable(function):
            raise TypeError(f"fallback {entrypoint} is not callable")
        return function

    def _forget_unused(self) -> None:
        used = {link.predictor.digest for route in self.table.routes.values() for link in route.predictors()}
        for digest in list(self._predictors):
            if digest not in used:
                del self._predictors[digest]  # in-flight requests keep their own reference

    # -- heartbeats ----------------------------------------------------------------

    def loaded(self) -> dict[str, Any]:
        return {
            route.project: {
                "revision": route.revision,
                **{
                    link.role: {"version": link.predictor.number, "engine": link.predictor.engine}
                    for link in route.predictors()
                },
            }
            for route in self.table.routes.values()
        }

    def _heartbeat(self, status: str) -> None:
        memory = self._process.memory_info().rss
        self.control_plane.heartbeat(
            self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            address=self.address,
            status=status,
            loaded=self.loaded(),
            details={
                "cpu_percent": self._process.cpu_percent(None),
                "memory_bytes": memory,
                "capture_queue": self.capture.depth,
                "capture_dropped": self.capture.dropped,
                "capture_written": self.capture.written,
                "capture_pending": self.capture.pending,
                "capture_spilled": self.capture.spilled,
                "refused": {p: f["error"] for p, f in self.failures.items()},
            },
        )

    def _try_heartbeat(self, status: str) -> None:
        """One heartbeat; a failure is logged and the next beat is the retry (never fatal)."""
        try:
            self._heartbeat(status)
        except HarbourmasterError as exc:
            log.warning("heartbeat failed (retried at the next beat): %s", exc.message)
        except Exception:
            log.exception("heartbeat failed (retried at the next beat)")

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.options.heartbeat_seconds):
            self._try_heartbeat("alive")


def _settle_heap() -> None:
    """Collect once, then freeze what is left (loaded models, libraries) out of the garbage collector.

    Without this every full collection walks hundreds of thousands of long-lived objects
    (tens of ms with the GIL held), which showed up as the p99 of a lone client. Unfreezing
    first lets versions that were swapped out be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
