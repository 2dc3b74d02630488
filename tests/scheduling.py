"""How the suite's files are spread over the xdist workers: the costliest first, and files that share a
session-scoped server on the same worker, so the two workers finish together and nothing starts twice.

xdist's ``loadfile`` hands out whole files in collection order. Collected in the tree's order, the long
end-to-end files came last and one worker ran them alone while the other idled. ``COST`` lists what
each heavy file took (seconds of setup, call and teardown summed over its tests on a quiet 2-core
machine; unlisted files took under 10 s); refresh it when a file's cost changes a lot. Being wrong
only costs balance, never a test.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadFileScheduling

COST: dict[str, float] = {  # measured 2026-12-03, quiet 2-core machine
    "tests/test_readme_tour.py": 117,
    "tests/serving/test_isolation.py": 66,
    "tests/console/test_console_charts.py": 66,
    "tests/governance/test_authorization_matrix.py": 63,
    "tests/test_demo.py": 61,
    "tests/lifecycle/test_bad_days.py": 58,
    "tests/governance/test_promotion_rules.py": 54,
    "tests/faces/test_cli.py": 49,
    "tests/dataplane/test_replica_process.py": 40,
    "tests/serving/test_replica_processes.py": 39,
    "tests/monitoring/test_drift_faces.py": 39,
    "tests/faces/test_cli_bad_input.py": 39,
    "tests/deploy/test_registration_warmup.py": 37,
    "tests/services/test_real_data_fits.py": 33,
    "tests/faces/test_openapi_fuzz.py": 33,
    "tests/serving/test_serving_end_to_end.py": 31,
    "tests/governance/test_audit_tamper.py": 30,
    "tests/serving/test_replica_http.py": 29,
    "tests/faces/test_cli_progress.py": 29,
    "tests/monitoring/test_alerts_end_to_end.py": 28,
    "tests/loadtest/test_loadtest.py": 28,
    "tests/monitoring/test_monitoring_cli.py": 27,
    "tests/deploy/test_deploy_waits_for_replicas.py": 25,
    "tests/deploy/test_deploy_and_fallback.py": 25,
    "tests/bundle/test_boosting_libraries.py": 25,
    "tests/governance/test_audit_signing.py": 24,
    "tests/deploy/test_rollout_restart.py": 24,
    "tests/store/test_registry_store.py": 23,
    "tests/monitoring/test_quality_faces.py": 23,
    "tests/faces/test_hints_name_real_things.py": 19,
    "tests/lifecycle/test_automation.py": 18,
    "tests/deploy/test_rollouts.py": 18,
    "tests/services/test_training_errors.py": 17,
    "tests/monitoring/test_console_reads.py": 16,
    "tests/governance/test_audit_anchor.py": 16,
    "tests/console/test_console_http.py": 16,
    "tests/governance/test_sandbox.py": 14,
    "tests/store/test_s3_artifacts.py": 13,
    "tests/monitoring/test_notifier_delivery.py": 13,
    "tests/lifecycle/test_retrain.py": 13,
    "tests/governance/test_separation_of_duties.py": 13,
    "tests/faces/test_sdk_register.py": 13,
    "tests/faces/test_http_api.py": 13,
    "tests/dataplane/test_static_stability.py": 13,
    "tests/bundle/test_engine_choice.py": 13,
    "tests/monitoring/test_sla_monitor.py": 10,
    "tests/faces/test_store_discovery.py": 10,
    "tests/faces/test_inspect_and_trust.py": 10,
    "tests/bundle/test_trusted_types_setting.py": 10,
}

# Files that must share a worker: their session fixture (a demo-filled console site) starts once.
SAME_WORKER: dict[str, str] = {
    "tests/console/test_console_charts.py": "tests/console",
    "tests/console/test_console_pages.py": "tests/console",
}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def cost(nodeid: str) -> float:
    path = file_of(nodeid)
    group = SAME_WORKER.get(path)
    if group is not None:
        return sum(seconds for name, seconds in COST.items() if SAME_WORKER.get(name) == group)
    return COST.get(path, 0.0)


def costliest_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: files by falling cost, each file's tests in their own order."""
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-cost(item.nodeid), position[id(item)]))


class GroupedFileScheduling(LoadFileScheduling):
    """``loadfile``, with the files of a ``SAME_WORKER`` group as one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        path = file_of(nodeid)
        return SAME_WORKER.get(path, path)
