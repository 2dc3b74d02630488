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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harbourmaster.bundle.code import project_imports
from harbourmaster.bundle.predictor import Predictor
from harbourmaster.core.fallback import DeploymentOptions, FallbackConfig
from harbourmaster.core.log_layout import UNROUTED, LogLayout
from harbourmaster.core.validation import Validator
from harbourmaster.errors import HarbourmasterError
from harbourmaster.schemas import DeploymentState, VersionPointer
from harbourmaster.serving.capture import CaptureWriter
from harbourmaster.serving.control_plane import ControlPlane
from harbourmaster.serving.lanes import InlineGate, Lane
from harbourmaster.serving.loading import Loader
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
    load_timeout_seconds: float = 120.0  # loading + warming one version; past it the version is refused
    start_timeout_seconds: float = 30.0  # the first reconcile may delay listening this long, no longer
    own_process: bool = False  # process-wide tuning (GC freezing after swaps): only under `harbourmaster serve`


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
            layout_wait_seconds=10.0,  # adopted segments: typed once the first reconcile describes the versions
        )
        self.table = RoutingTable()
        self.guarded = False
        self.failures: dict[str, dict[str, Any]] = {}  # replaced, never mutated: readers need no lock
        self._predictors: dict[str, Predictor] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._stop = threading.Event()
        self._beat_now = threading.Event()  # set when what this replica serves or refuses changed
        self._loader = Loader(self.options.load_timeout_seconds, self._stop)
        self._first_reconcile = threading.Event()
        self.metrics.lanes = self._lane_figures
        self._threads: list[threading.Thread] = []
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self._started = False
        self._trusted: dict[str, list[str]] = {}
        self._answered: dict[tuple[str, int], int] = {}  # (project, version) -> answers given as champion

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the loops; wait for the first reconcile (so a fresh replica is ready when it listens), bounded.

        Past ``start_timeout_seconds`` the replica listens anyway (not ready until something is servable).
        """
        if self._started:
            return
        self._started = True
        for name, target in (("hm-reconcile", self._reconcile_loop), ("hm-heartbeat", self._heartbeat_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._first_reconcile.wait(self.options.start_timeout_seconds):
            log.warning(
                "first reconcile still running after %g s: listening, not ready yet", self.options.start_timeout_seconds
            )

    def stop(self) -> None:
        """Stop polling, finish shadow work, flush the prediction log, say goodbye in the store."""
        self._stop.set()
        self._beat_now.set()
        for thread in self._threads:
            thread.join(10)
        for route in self.table.routes.values():
            for link in route.predictors():
                if link.batcher is not None:
                    link.batcher.close()
        for lane in list(self._lanes.values()):
            lane.close()
        self.capture.close()
        self._try_heartbeat("stopped")

    # -- reconciling ---------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        try:
            self.reconcile()
        except Exception:
            log.exception("first reconcile failed; retrying in the background")
        finally:
            self._first_reconcile.set()
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
            if self._stop.is_set():
                break
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
                if project not in routes:  # a fresh replica: serve the last version that loaded here
                    last = self._last_good(project, revision)
                    if last is not None:
                        routes[project] = last
                        changed = True
                served = routes[project].revision if project in routes else None
                failure = {"revision": revision, "at": time.monotonic(), "error": message, "serving": served}
                self.failures = {**self.failures, project: failure}
                self._beat_now.set()  # the control plane hears of a refusal at once, not at the next beat
                continue
            self._remember_good(state)
            self.failures = {p: f for p, f in self.failures.items() if p != project}
            changed = True
        ready = bool(routes) or not states  # not ready only while nothing servable is loaded
        if changed or ready != current.ready:
            self.table = RoutingTable(routes=routes, ready=ready)  # the atomic swap
            self._beat_now.set()  # ... and of what this replica now serves
            self._retire(current)
            self._forget_unused()
            if self.options.own_process:
                settle_heap()
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

            def load() -> Predictor:
                bundle = self.control_plane.load_bundle(project, pointer.digest, trusted)
                loaded = Predictor(pointer.number, bundle, use_onnx=self.options.use_onnx)
                loaded.warm()
                return loaded

            predictor = self._loader.load(pointer.digest, f"{project} v{pointer.number}", load)
            self._predictors[pointer.digest] = predictor
        return predictor

    def _lane(self, project: str, role: str, options: DeploymentOptions) -> Lane:
        """The lane of one link of a project, kept across swaps while its limits stay the same."""
        limits = options.concurrency
        lane = self._lanes.get((project, role))
        if lane is None or (lane.max_in_flight, lane.max_queued) != (limits.max_in_flight, limits.max_queued):
            abandoned = self.metrics.abandoned_counter(project, role)
            lane = Lane(f"{project}-{role}", limits.max_in_flight, limits.max_queued, abandoned)
            self._lanes[(project, role)] = lane
        return lane

    def _link(self, role: str, project: str, pointer: VersionPointer, options: DeploymentOptions) -> Link:
        predictor = self._predictor(project, pointer)
        lane = self._lane(project, role, options)
        batcher = None
        if options.microbatch.enabled:
            batching = options.microbatch
            observe = self.metrics.batch_observer(project, predictor.number)
            abandoned = self.metrics.abandoned_counter(project, role)
            batcher = Microbatcher(predictor, lane, batching.max_batch, batching.max_wait_ms, observe, abandoned)
        inline_ms = options.concurrency.inline_ms
        budget = options.latency_budget_ms
        gate = None
        if predictor.library_only and batcher is None and inline_ms > 0 and (budget is None or budget > inline_ms):
            gate = InlineGate(inline_ms / 1000.0)
        return Link(role, predictor, humility_for(predictor, options), lane, batcher, gate)

    def _build(self, state: DeploymentState) -> ProjectRoute:
        assert state.champion is not None
        options = DeploymentOptions.model_validate(state.options or {})
        fallback = FallbackConfig.model_validate(state.fallback or {})
        champion = self._link("champion", state.project, state.champion, options)
        challenger = (
            self._link("challenger", state.project, state.challenger.version, options) if state.challenger else None
        )
        failover = self._link("failover", state.project, state.failover, options) if state.failover else None
        function = None
        if fallback.function:  # importing project code runs it: under the load deadline too
            entrypoint, predictor = fallback.function, champion.predictor
            what = f"{state.project} fallback {entrypoint}"
            key = f"{predictor.digest}:{entrypoint}"
            function = self._loader.load(key, what, lambda: self._fallback_function(predictor, entrypoint))
        for link in (champion, challenger, failover):
            if link is not None:
                number = link.predictor.number
                self.capture.describe(state.project, number, log_layout(link.predictor, number))
        # Rows no version answered (fallback rules, refusals) were validated against the champion's schema.
        self.capture.describe(state.project, None, log_layout(champion.predictor, None))
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
            rules_lane=self._lane(state.project, "rules", options) if function else None,
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
        routes = list(self.table.routes.values())
        used = {link.predictor.digest for route in routes for link in route.predictors()}
        for digest in list(self._predictors):
            if digest not in used:
                del self._predictors[digest]  # in-flight requests keep their own reference
        lanes = {id(link.lane) for route in routes for link in route.predictors()}
        lanes |= {id(route.rules_lane) for route in routes if route.rules_lane is not None}
        for key, lane in list(self._lanes.items()):
            if id(lane) not in lanes:
                del self._lanes[key]
                lane.close()  # its threads end once idle; a late request of the old table still gets one

    def _retire(self, previous: RoutingTable) -> None:
        """Close the micro-batchers of links the new table no longer has (requests queued there finish)."""
        kept = {id(link.batcher) for route in self.table.routes.values() for link in route.predictors()}
        for route in previous.routes.values():
            for link in route.predictors():
                if link.batcher is not None and id(link.batcher) not in kept:
                    link.batcher.close()

    def _lane_figures(self) -> list[tuple[str, str, int, int, int, int, int, int]]:
        """(project, role, running, queued, abandoned, inline open, inline calls, inline closings) of every lane
        the current table uses (for /metrics)."""
        out = []
        for route in list(self.table.routes.values()):
            lanes = [(link.role, link.lane, link.gate) for link in route.predictors()]
            if route.rules_lane is not None:
                lanes.append(("rules", route.rules_lane, None))
            for role, lane, gate in lanes:
                inline = (int(gate.open), gate.closed_total) if gate is not None else (0, 0)
                out.append((route.project, role, *lane.figures(), inline[0], lane.inline_total, inline[1]))
        return out

    # -- the last version that loaded here ----------------------------------------------

    def _good_path(self, project: str) -> Path:
        return Path(self.control_plane.settings.cache_dir) / "serving" / self.environment / f"{project}.json"

    def _remember_good(self, state: DeploymentState) -> None:
        """Keep the desired state this replica just loaded, for a restart after a refused deploy."""
        path = self._good_path(state.project)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            temporary.write_text(state.model_dump_json())
            os.replace(temporary, path)  # atomic: workers of one environment share the file
        except OSError:
            log.exception("could not remember the last good state of %s", state.project)

    def _last_good(self, project: str, refused: int) -> ProjectRoute | None:
        """The route of the last desired state that loaded in this cache dir, when it is not the refused one."""
        path = self._good_path(project)
        try:
            state = DeploymentState.model_validate_json(path.read_text())
        except FileNotFoundError:
            return None
        except Exception:
            log.exception("unreadable last good state of %s at %s", project, path)
            return None
        if state.revision == refused or state.champion is None:
            return None
        try:
            route = self._build(state)
        except Exception as exc:
            log.error("%s: the last good revision %s does not load either: %s", project, state.revision, exc)
            return None
        log.warning("%s: serving revision %s, the last one that loaded here", project, state.revision)
        return route

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

    def count_answer(self, project: str, version: int) -> None:
        """One request answered by ``version`` as champion (the order gate's evidence that it served)."""
        key = (project, version)
        count = self._answered.get(key, 0)
        self._answered[key] = count + 1
        if not count:
            self._beat_now.set()  # the first answer of a version is news for the control plane

    def answered(self) -> dict[str, dict[str, int]]:
        """Per project, per version: how many requests it answered as champion since this replica started."""
        out: dict[str, dict[str, int]] = {}
        for (project, version), count in list(self._answered.items()):
            out.setdefault(project, {})[str(version)] = count
        return out

    def refused(self) -> dict[str, dict[str, Any]]:
        """Per project: the revision this replica refused, why, and the revision it serves instead (or None)."""
        return {
            project: {"revision": f["revision"], "error": f["error"], "serving": f.get("serving")}
            for project, f in self.failures.items()
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
                "refused": self.refused(),
                "answered": self.answered(),
                "traffic": self.metrics.traffic(skip=(UNROUTED,)),
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
        # "starting" at once and at each beat until the first reconcile ends (or the start timeout passes):
        # a deploy waits for a replica that is starting instead of finding none.
        deadline = time.monotonic() + self.options.start_timeout_seconds
        while not self._first_reconcile.is_set() and not self._stop.is_set():
            self._try_heartbeat("starting")
            left = deadline - time.monotonic()
            if left <= 0 or self._first_reconcile.wait(min(self.options.heartbeat_seconds, left)):
                break
        self._try_heartbeat("alive")
        while not self._stop.is_set():
            self._beat_now.wait(self.options.heartbeat_seconds)
            self._beat_now.clear()
            if self._stop.is_set():
                break
            self._try_heartbeat("alive")


def settle_heap() -> None:
    """Collect once, then freeze what is left (loaded models, libraries) out of the garbage collector.

    Without this every full collection walks hundreds of thousands of long-lived objects
    (tens of ms with the GIL held), which showed up as the p99 of a lone client. Unfreezing
    first lets versions that were swapped out be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def log_layout(predictor: Predictor, version: int | None) -> LogLayout:
    """The typed prediction-log columns of a loaded version's rows, filed under ``version``."""
    manifest = predictor.bundle.manifest
    return LogLayout.from_schemas(version, manifest.input_schema, manifest.output_schema, predictor.classes)
