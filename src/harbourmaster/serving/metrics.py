"""Prometheus metrics of one replica (its own CollectorRegistry, so replicas in one process never mix)."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from harbourmaster.core.sla import FALLBACK_PATHS, LATENCY_BUCKETS, NO_LATENCY_PATHS, NOT_PREDICTIONS

MAX_TRAFFIC_PROJECTS = 1000  # projects per heartbeat: a heartbeat stays bounded
MICROBATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServingMetrics:
    """Requests, latency, fallbacks, capture queue and loaded versions."""

    def __init__(self, environment: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.environment = environment
        self._born = time.monotonic()  # when every counter was zero
        # harbourmaster_requests_total and harbourmaster_request_latency_seconds: counted on every request
        # (see ``observe``), turned into metric families at scrape time.
        self._counts = _RequestCounts(environment)
        self.requests = _Families(self._counts.request_families)
        self.latency = _Families(self._counts.latency_families)
        self.registry.register(self.requests)
        self.registry.register(self.latency)
        self._canary_children: dict[tuple[str, str, str], Any] = {}  # labelled children, looked up once
        self.fallbacks = Counter(
            "harbourmaster_fallbacks",
            "Requests that left a model for the next link of the chain, by reason and target.",
            ["environment", "project", "source", "reason", "target"],
            registry=self.registry,
        )
        self.capture_depth = Gauge(
            "harbourmaster_capture_queue_depth", "Predictions waiting to be written.", registry=self.registry
        )
        self.capture_dropped = Counter(
            "harbourmaster_capture_dropped",
            "Answered rows that will never reach the prediction log (spool full, or not encodable).",
            registry=self.registry,
        )
        self.capture_pending = Gauge(
            "harbourmaster_capture_pending_rows",
            "Answered rows spooled and not yet in the prediction log (in memory or on disk).",
            registry=self.registry,
        )
        self.capture_spilled = Gauge(
            "harbourmaster_capture_spilled_rows",
            "Answered rows waiting on local disk only, because the prediction-log store failed.",
            registry=self.registry,
        )
        self.capture_spool_bytes = Gauge(
            "harbourmaster_capture_spool_bytes", "Bytes of the local capture spool.", registry=self.registry
        )
        self.capture_spool_full = Counter(
            "harbourmaster_capture_spool_full",
            "Answered rows dropped because the local capture spool was full.",
            registry=self.registry,
        )
        self.capture_written = Counter(
            "harbourmaster_capture_written", "Prediction rows written to the log.", registry=self.registry
        )
        self.capture_errors = Counter(
            "harbourmaster_capture_write_errors", "Failed prediction-log writes (retried).", registry=self.registry
        )
        self.loaded = Gauge(
            "harbourmaster_loaded_version",
            "Versions loaded by this replica (1 per project, version and role).",
            ["environment", "project", "version", "role", "engine"],
            registry=self.registry,
        )
        self.reconcile_failures = Counter(
            "harbourmaster_reconcile_failures",
            "Desired states this replica refused because a version failed to load or warm.",
            ["environment", "project"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "harbourmaster_shadow_dropped",
            "Shadow copies skipped because the shadow queue was full.",
            registry=self.registry,
        )
        self.microbatch_requests = Histogram(
            "harbourmaster_microbatch_requests",
            "Requests merged into one predict call by micro-batching, by project and version.",
            ["environment", "project", "version"],
            buckets=MICROBATCH_BUCKETS,
            registry=self.registry,
        )
        self.saturated_calls = Counter(
            "harbourmaster_saturated",
            "Model calls refused at once because the link's lane (running + queued calls) was full.",
            ["environment", "project", "role"],
            registry=self.registry,
        )
        self.abandoned_calls = Counter(
            "harbourmaster_abandoned_calls",
            "Requests that stopped waiting (latency budget) for a model call already running; it finishes alone.",
            ["environment", "project", "role"],
            registry=self.registry,
        )
        self.fallback_function_failures = Counter(
            "harbourmaster_fallback_function_failures",
            "Fallback function calls that raised, timed out or found their lane full (the rule table went on).",
            ["environment", "project", "kind"],
            registry=self.registry,
        )
        self.shadow_errors = Counter(
            "harbourmaster_shadow_errors",
            "Shadow predictions that failed (the challenger raised or timed out); the champion's answer stands.",
            ["environment", "project"],
            registry=self.registry,
        )
        self.canary_requests = Counter(
            "harbourmaster_canary_requests",
            "Prediction requests of a project with a canary challenger, by the side the router picked and what "
            "came of it (answered by that side's model, fallback: another link answered, failed: 503).",
            ["environment", "project", "side", "result"],
            registry=self.registry,
        )
        # (project, role, running, queued, abandoned, inline, inline calls, inline closings) per lane
        self.lanes: Callable[[], list[tuple[str, str, int, int, int, int, int, int]]] = list
        self.registry.register(_LaneCollector(self))

    def observe(self, project: str, version: Any, path: str, status: int, seconds: float) -> None:
        """Count one request and its latency (on the hot path: see ``_RequestCounts``)."""
        self._counts.observe(project, version, path, status, seconds)

    def refused(self, project: str, status: int, seconds: float, *, path: str = "refused") -> None:
        """Count one refused request (a 4xx, or a 5xx of the replica itself) on a project's endpoints;
        ``path="feedback"`` for refused feedback, which is not a prediction request for the SLA."""
        self.observe(project, "none", path, status, seconds)

    def canary(self, project: str, side: str, result: str) -> None:
        """Count one request of a canary deployment on its side (the rollout controller compares the sides)."""
        key = (project, side, result)
        child = self._canary_children.get(key)
        if child is None:
            child = self._canary_children[key] = self.canary_requests.labels(self.environment, project, side, result)
        child.inc()

    def fallback(self, project: str, source: str, reason: str, target: str) -> None:
        self.fallbacks.labels(self.environment, project, source, reason, target).inc()

    def saturated(self, project: str, role: str) -> None:
        self.saturated_calls.labels(self.environment, project, role).inc()

    def abandoned_counter(self, project: str, role: str) -> Callable[[], None]:
        """A callable counting one abandoned call of ``project``'s ``role`` link."""
        return self.abandoned_calls.labels(self.environment, project, role).inc

    def fallback_function_failed(self, project: str, kind: str) -> None:
        self.fallback_function_failures.labels(self.environment, project, kind).inc()

    def shadow_failed(self, project: str) -> None:
        self.shadow_errors.labels(self.environment, project).inc()

    def batch_observer(self, project: str, version: int) -> Any:
        """A callable counting one micro-batch of ``n`` requests for one version."""
        return self.microbatch_requests.labels(self.environment, project, str(version)).observe

    def set_loaded(self, loaded: list[tuple[str, int, str, str]]) -> None:
        """Replace the loaded-version gauge with (project, version, role, engine) tuples."""
        self.loaded.clear()
        for project, version, role, engine in loaded:
            self.loaded.labels(self.environment, project, str(version), role, engine).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def traffic(self, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Cumulative counters per project for the heartbeat (read off the request path, from the same
        counters /metrics exposes): prediction requests, 5xx errors, fallback answers, and the latency
        histogram of timed requests (counts per bucket bound, cumulative). Bounded in projects."""
        projects: dict[str, dict[str, Any]] = {}

        def entry(project: str) -> dict[str, Any] | None:
            if not project or project in skip:
                return None
            found = projects.get(project)
            if found is None and len(projects) < MAX_TRAFFIC_PROJECTS:
                found = projects[project] = {
                    "requests": 0,
                    "errors": 0,
                    "fallbacks": 0,
                    "timed": 0,
                    "latency_sum": 0.0,
                    "buckets": [0] * len(LATENCY_BUCKETS),
                }
            return found

        for family in self.requests.collect():
            for sample in family.samples:
                labels = sample.labels
                if not sample.name.endswith("_total") or labels["path"] in NOT_PREDICTIONS:
                    continue
                counts = entry(labels["project"])
                if counts is None:
                    continue
                counts["requests"] += int(sample.value)
                if labels["status"].startswith("5"):
                    counts["errors"] += int(sample.value)
                if labels["path"] in FALLBACK_PATHS:
                    counts["fallbacks"] += int(sample.value)
        index = {bound: i for i, bound in enumerate(LATENCY_BUCKETS)}
        for family in self.latency.collect():
            for sample in family.samples:
                labels = sample.labels
                if labels["path"] in NO_LATENCY_PATHS:
                    continue
                counts = entry(labels["project"])
                if counts is None:
                    continue
                if sample.name.endswith("_count"):
                    counts["timed"] += int(sample.value)
                elif sample.name.endswith("_sum"):
                    counts["latency_sum"] += sample.value
                elif sample.name.endswith("_bucket") and labels["le"] != "+Inf":
                    counts["buckets"][index[float(labels["le"])]] += int(sample.value)
        return {
            "uptime": round(time.monotonic() - self._born, 3),
            "bounds": list(LATENCY_BUCKETS),
            "projects": projects,
            "sides": self._sides(skip),
        }

    def _sides(self, skip: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
        """Per project with canary traffic, each side's counters: requests, errors (503s, and on the
        challenger's side also the requests it left to the champion), fallbacks, and the latency
        histogram of the requests that side's model answered."""
        sides: dict[str, dict[str, dict[str, Any]]] = {}
        for family in self.canary_requests.collect():
            for sample in family.samples:
                labels = sample.labels
                project, side, result = labels["project"], labels["side"], labels["result"]
                if not sample.name.endswith("_total") or project in skip:
                    continue
                if project not in sides and len(sides) >= MAX_TRAFFIC_PROJECTS:
                    continue
                counts = sides.setdefault(project, {}).setdefault(side, _zero_counts())
                counts["requests"] += int(sample.value)
                if result == "failed" or (result == "fallback" and side == "challenger"):
                    counts["errors"] += int(sample.value)
                if result == "fallback":
                    counts["fallbacks"] += int(sample.value)
        index = {bound: i for i, bound in enumerate(LATENCY_BUCKETS)}
        for family in self.latency.collect():
            for sample in family.samples:
                labels = sample.labels
                counts = sides.get(labels["project"], {}).get(labels["path"])
                if counts is None:
                    continue
                if sample.name.endswith("_count"):
                    counts["timed"] += int(sample.value)
                elif sample.name.endswith("_sum"):
                    counts["latency_sum"] += sample.value
                elif sample.name.endswith("_bucket") and labels["le"] != "+Inf":
                    counts["buckets"][index[float(labels["le"])]] += int(sample.value)
        return sides


def _zero_counts() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "fallbacks": 0,
        "timed": 0,
        "latency_sum": 0.0,
        "buckets": [0] * len(LATENCY_BUCKETS),
    }


class _RequestCounts:
    """Requests by (project, version, path, status) and their latency histogram by (project, path), in plain
    lists under one lock: one dictionary lookup, one ``bisect`` and three additions per request, where a
    prometheus_client counter and histogram took about 6 us (two locks, a Python loop over the buckets)."""

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self._lock = threading.Lock()
        # key -> [requests, latency list (shared per project and path), created]
        self._requests: dict[tuple[str, Any, str, int], list[Any]] = {}
        # (project, path) -> [count per bucket (LATENCY_BUCKETS, then +Inf), sum of seconds, created]
        self._latency: dict[tuple[str, str], list[Any]] = {}

    def observe(self, project: str, version: Any, path: str, status: int, seconds: float) -> None:
        """Count one request (answered or refused) and its latency; safe from any thread."""
        key = (project, version, path, status)
        with self._lock:
            entry = self._requests.get(key)
            if entry is None:
                entry = self._add(key)
            entry[0] += 1
            buckets = entry[1]
            buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound >= seconds (le is inclusive)
            buckets[-2] += seconds

    def _add(self, key: tuple[str, Any, str, int]) -> list[Any]:
        project, _version, path, _status = key
        created = time.time()
        latency = self._latency.get((project, path))
        if latency is None:
            latency = self._latency[(project, path)] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0, created]
        entry = self._requests[key] = [0, latency, created]
        return entry

    def request_families(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(
            "harbourmaster_requests",
            "Requests to the prediction and feedback endpoints, answered or refused, by project, version, path "
            "(champion, challenger, failover, rules, unavailable, feedback, or refused) and HTTP status.",
            labels=["environment", "project", "version", "path", "status"],
        )
        with self._lock:
            rows = [(key, entry[0], entry[2]) for key, entry in self._requests.items()]
        for (project, version, path, status), count, created in rows:
            family.add_metric([self.environment, project, str(version), path, str(status)], count, created=created)
        return [family]

    def latency_families(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "harbourmaster_request_latency_seconds",
            "Time to answer a prediction request, by project and path.",
            labels=["environment", "project", "path"],
        )
        with self._lock:
            rows = [(key, list(entry)) for key, entry in self._latency.items()]
        bounds = [floatToGoString(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
        for (project, path), entry in rows:
            cumulative, total = [], 0
            for bound, count in zip(bounds, entry[: len(bounds)], strict=True):
                total += count
                cumulative.append((bound, total))
            family.add_metric([self.environment, project, path], cumulative, entry[-2])
        return [family]


class _Families:
    """A registry collector over a function returning metric families (``collect`` is what ``traffic`` reads)."""

    def __init__(self, families: Callable[[], list[Any]]) -> None:
        self.collect = families

    def describe(self) -> list[Any]:
        return []


class _LaneCollector:
    """Gauges read from the replica's lanes at scrape time (nothing on the request path)."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["environment", "project", "role"]
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(name, text, labels=labels)
            for name, text in (
                ("harbourmaster_lane_running", "Model calls running now (abandoned included)."),
                ("harbourmaster_lane_queued", "Model calls waiting for a slot of their lane."),
                ("harbourmaster_lane_abandoned", "Abandoned model calls still running (bounded by max_in_flight)."),
                ("harbourmaster_lane_inline", "1 while the link's small calls run on the event loop (library code)."),
            )
        ]
        families += [
            CounterMetricFamily(name, text, labels=labels)
            for name, text in (
                ("harbourmaster_lane_inline_calls", "Model calls that ran on the event loop instead of a thread."),
                ("harbourmaster_lane_inline_closed", "Times a call over the inline budget sent the link to threads."),
            )
        ]
        for project, role, *values in self.metrics.lanes():
            for family, value in zip(families, values, strict=True):
                family.add_metric([self.metrics.environment, project, role], value)
        yield from families
