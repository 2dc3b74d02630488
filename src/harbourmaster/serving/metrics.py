"""Prometheus metrics of one replica (its own CollectorRegistry, so replicas in one process never mix)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)
MICROBATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServingMetrics:
    """Requests, latency, fallbacks, capture queue and loaded versions."""

    def __init__(self, environment: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.environment = environment
        self.requests = Counter(
            "harbourmaster_requests",
            "Requests to the prediction and feedback endpoints, answered or refused, by project, version, path "
            "(champion, challenger, failover, rules, unavailable, feedback, or refused) and HTTP status.",
            ["environment", "project", "version", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "harbourmaster_request_latency_seconds",
            "Time to answer a prediction request, by project and path.",
            ["environment", "project", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
        self._children: dict[tuple[Any, ...], Any] = {}

    def observe(self, project: str, version: Any, path: str, status: int, seconds: float) -> None:
        """Count one answered request (label children cached: this is on the hot path)."""
        key = (project, version, path, status)
        child = self._children.get(key)
        if child is None:
            child = (
                self.requests.labels(self.environment, project, str(version), path, str(status)),
                self.latency.labels(self.environment, project, path),
            )
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def refused(self, project: str, status: int, seconds: float) -> None:
        """Count one refused request (a 4xx, or a 5xx of the replica itself) on a project's endpoints."""
        self.observe(project, "none", "refused", status, seconds)

    def fallback(self, project: str, source: str, reason: str, target: str) -> None:
        self.fallbacks.labels(self.environment, project, source, reason, target).inc()

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
