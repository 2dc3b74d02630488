"""The replica's request counter and latency histogram expose what prometheus_client's own would."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harbourmaster.core.sla import LATENCY_BUCKETS
from harbourmaster.serving.metrics import ServingMetrics

# On, just under and just over bucket bounds, past the last one, and zero.
SECONDS = [0.0, 0.0005, 0.00049, 0.00051, 0.002, 0.0123, 1.0, 4.99, 5.0, 5.01, 60.0]


def samples(text: bytes, prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name.startswith(prefix) and not s.name.endswith("_created")
    }


def test_the_same_samples_as_a_prometheus_client_counter_and_histogram() -> None:
    ours = ServingMetrics("dev")
    registry = CollectorRegistry()
    counter = Counter(
        "harbourmaster_requests", "r", ["environment", "project", "version", "path", "status"], registry=registry
    )
    histogram = Histogram(
        "harbourmaster_request_latency_seconds", "l", ["environment", "project", "path"],
        buckets=LATENCY_BUCKETS, registry=registry,
    )  # fmt: skip
    for i, seconds in enumerate(SECONDS):
        project, path, status, version = ("a", "champion", 200, 1) if i % 3 else ("b", "refused", 422, "none")
        ours.observe(project, version, path, status, seconds)
        counter.labels("dev", project, str(version), path, str(status)).inc()
        histogram.labels("dev", project, path).observe(seconds)
    reference = generate_latest(registry)
    for prefix in ("harbourmaster_requests", "harbourmaster_request_latency_seconds"):
        assert samples(ours.render(), prefix) == samples(reference, prefix)
    assert ours.traffic()["projects"]["a"]["requests"] == sum(1 for i in range(len(SECONDS)) if i % 3)


def test_counts_from_many_threads_add_up() -> None:
    metrics = ServingMetrics("dev")

    def hammer() -> None:
        for _ in range(2000):
            metrics.observe("p", 1, "champion", 200, 0.001)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = samples(metrics.render(), "harbourmaster_request")
    total = [v for (name, _labels), v in found.items() if name == "harbourmaster_requests_total"]
    count = [v for (name, _labels), v in found.items() if name == "harbourmaster_request_latency_seconds_count"]
    assert total == [16000] and count == [16000]
