"""The authorization matrix: every HTTP operation x every role, against a live server.

Expectations are derived from the permission table (``core.permissions``) and the
``x-permission`` / ``x-environment-param`` each route declares in the OpenAPI
document, never written by hand. An operation that declares no permission, or has
no example request below, fails the test: a new endpoint cannot be forgotten.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from harbourmaster.api.app import create_app
from harbourmaster.api.permissions import AUTHENTICATED, PUBLIC, REPLICA
from harbourmaster.core.duties import token_step
from harbourmaster.core.permissions import Permission, is_allowed
from harbourmaster.errors import ConfirmationRequiredError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.tables import AuditEventRow
from served import serve_champion

from .helpers import PROJECT, SYSTEM, USERS, actor, create_users, live_server, train

# Who plays each role in the matrix (plus a second approver, amy, used for seeding).
MATRIX_USERS = {
    "vera": "viewer",
    "dana": "data-scientist",
    "otto": "operator (no grant)",
    "olga": "operator (prod grant)",
    "abe": "approver",
    "audrey": "auditor",
    "root": "admin",
}
DECLARED = {p.value for p in Permission} | {AUTHENTICATED, PUBLIC, REPLICA}


@dataclass
class Seed:
    """State every example request can rely on."""

    digest: str
    bundle_file: str
    manifest: str
    files: dict[str, bytes]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"


@dataclass
class Request:
    path: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    files: list[Any] | None = None


Example = Callable[[Platform, Seed, str], Request]


def _env(environment: str) -> Example:
    return lambda _p, _s, _u: Request(path={"environment": environment})


def _dep(environment: str, **body: Any) -> Example:
    return lambda _p, _s, _u: Request(path={"project": PROJECT, "environment": environment}, json=body or None)


def _prepare_tag(platform: Platform, seed: Seed, user: str) -> Request:
    platform.registry.set_tag(SYSTEM, PROJECT, 1, "doomed", "x")
    return Request(path={"project": PROJECT, "version": 1, "key": "doomed"})


def _prepare_grant(platform: Platform, seed: Seed, user: str) -> Request:
    platform.identity.grant(SYSTEM, "scratch", "prod", "deploy")
    return Request(path={"name": "scratch", "environment": "prod", "permission": "deploy"})


def _prepare_own_token(platform: Platform, seed: Seed, user: str) -> Request:
    issued = platform.identity.create_token(SYSTEM, user, seed.unique("throwaway"))
    return Request(path={"token_id": issued.id})


def _register(platform: Platform, seed: Seed, user: str) -> Request:
    files = [(path, (path, content, "application/octet-stream")) for path, content in seed.files.items()]
    return Request(path={"project": "uploads"}, data={"manifest": seed.manifest}, files=files)


def _prepare_credential(platform: Platform, seed: Seed, user: str) -> Request:
    issued = platform.dataplane.create_credential(SYSTEM, "dev", seed.unique("doomed"))
    return Request(path={"credential_id": issued.id})


def _dataplane(environment: str, **request: Any) -> Example:
    """A data-plane call: no person may make it (a replica credential of the environment only)."""

    def example(_platform: Platform, seed: Seed, _user: str) -> Request:
        path = {"environment": environment, "digest": seed.digest, "path": seed.bundle_file, "project": PROJECT}
        return Request(path=path, **request)

    return example


def _labelled(environment: str) -> Example:
    """One more answered request of the seed project in ``environment``, with its ground truth."""

    def example(platform: Platform, seed: Seed, _user: str) -> Request:
        from datetime import UTC, datetime

        from harbourmaster.store.prediction_log import write_feedback, write_predictions
        from served import any_record

        request_id, now = seed.unique("labelled"), datetime.now(UTC)
        record = {"request_id": request_id, "row": 0, "ts": now, "environment": environment, "project": PROJECT}
        write_predictions(
            platform.artifacts,
            [
                {
                    **record,
                    **dict.fromkeys(("reason", "probabilities", "shadow_version", "shadow_output")),
                    "version": 1,
                    "path": "champion",
                    "status": 200,
                    "latency_ms": 1.0,
                    "inputs": json.dumps(any_record(platform, PROJECT, 1)),
                    "output": "0",
                    "replica": "r1",
                }
            ],
        )
        write_feedback(platform.artifacts, [{**record, "value": "0", "actor": "tests"}])
        return Request(path={"project": PROJECT, "environment": environment}, json={})

    return example


_RETRAINED: dict[int, Any] = {}


def _retrained(platform: Platform) -> tuple[str, Any]:
    """A project (``shifty``) with a champion in dev, a version retrained on its production rows, and labelled
    rows since that version's held-out boundary; returns the project and the boundary."""
    from datetime import UTC, datetime, timedelta

    from sklearn.linear_model import LogisticRegression

    from harbourmaster.services.packaging import package_version
    from lifecycle.projects import PROJECT as SHIFTY
    from lifecycle.projects import frame, log_traffic

    if id(platform) not in _RETRAINED:
        data = frame(120, seed=1)
        features = data[["x1", "x2"]]
        model = LogisticRegression().fit(features, data["y"])
        boundary = datetime.now(UTC) - timedelta(minutes=30)
        for lineage in ({}, {"retrain": {"holdout": {"from": boundary.isoformat()}}}):
            bundle = package_version(
                model, features=features, target=data["y"], metrics={}, lineage=lineage, created_by="tests"
            )
            platform.registry.register_bundle(SYSTEM, SHIFTY, bundle)
        platform.deployments.deploy(SYSTEM, SHIFTY, 1, "dev")
        log_traffic(platform, data.head(20), version=1, environment="dev")
        _RETRAINED[id(platform)] = boundary
    return SHIFTY, _RETRAINED[id(platform)]


def _scored(platform: Platform) -> tuple[str, dict[str, Any]]:
    project, boundary = _retrained(platform)
    rows = platform.retraining.production_rows(SYSTEM, project, "dev", since=boundary, purpose="evaluate").rows
    zeros = [0] * len(rows)
    return project, {
        "champion": 1,
        "request_ids": [r.request_id for r in rows],
        "rows": [r.row for r in rows],
        "candidate": zeros,
        "champion_predictions": zeros,
    }


def _evaluation(platform: Platform, _seed: Seed, _user: str) -> Request:
    project, body = _scored(platform)
    return Request(path={"project": project, "version": 2, "environment": "dev"}, json=body)


def _challenger_report(platform: Platform, _seed: Seed, _user: str) -> Request:
    from harbourmaster.services.retraining import ScoredRows

    project, body = _scored(platform)
    result = platform.retraining.record_challenger(SYSTEM, project, 2, "dev", ScoredRows.model_validate(body))
    return Request(path={"report_id": result.report.id})


HEARTBEAT = {"replica": "matrix-1", "host": "h", "pid": 1}
SCORE_RUN = {"project": PROJECT, "version": 1, "status": "succeeded", "rows_in": 1, "rows_out": 1}
PREDICTION_KEY = "predictions/env=dev/project=breast-cancer/date=2026-01-01/" + "a" * 32 + ".parquet"


def _configure(environment: str) -> Example:
    def example(platform: Platform, seed: Seed, user: str) -> Request:
        config = platform.environments.get(environment).config.model_dump(mode="json")
        return Request(path={"environment": environment}, json={"config": config})  # same config back

    return example


def _prepare_duty_request(platform: Platform, seed: Seed, user: str) -> Request:
    """A step another admin parked for a second admin: minting a token for the scratch user."""
    other_admin = Actor(name="second-admin", roles=frozenset({"admin"}))
    step = token_step(other_admin.name, "scratch")
    assert step is not None
    payload = {"user": "scratch", "name": seed.unique("parked"), "expires_in_seconds": 3600, "parent_id": None}
    with pytest.raises(ConfirmationRequiredError) as raised:
        platform.duties.guard(other_admin, step, payload)
    return Request(path={"request_id": int(raised.value.hint.rsplit(" ", 1)[1])})


def _prepare_alert(platform: Platform, seed: Seed, user: str) -> Request:
    """A firing alert about a dev replica (acknowledging one in prod also needs a prod deploy grant:
    tests/monitoring checks that refusal)."""
    from harbourmaster.core.alerts import Severity, Verdict

    verdict = Verdict(
        "replica.silent", seed.unique("replica:matrix"), True, Severity.CRITICAL, "silent", environment="dev"
    )
    [change] = platform.alerts.apply([verdict])
    return Request(path={"alert_id": change.alert_id}, json={"seconds": 3600})


def _prepare_notifier(platform: Platform, seed: Seed, user: str) -> Request:
    name = seed.unique("doomed-notifier")
    platform.notifiers.add(SYSTEM, name, "log")
    return Request(path={"name": name})


def _rollout(action: str | None, paused: bool = False) -> Example:
    """A fresh canary rollout of v2 in dev (any earlier one aborted), paused if the action is a resume."""

    def example(platform: Platform, seed: Seed, user: str) -> Request:
        from harbourmaster.core.rollout_rules import rollout_plan

        for active in platform.rollouts.list(SYSTEM, PROJECT, active=True):
            platform.rollouts.abort(SYSTEM, active.id)
        started = platform.promotions.promote(SYSTEM, PROJECT, 2, "dev", rollout=rollout_plan("canary", bake=600))
        if paused:
            platform.rollouts.pause(SYSTEM, started.rollout_id)
        path: dict[str, Any] = {"rollout_id": started.rollout_id}
        if action:
            path["action"] = action
        return Request(path=path, json={"reason": "matrix"})

    return example


# (METHOD, path template) -> example requests; each must succeed (2xx) for a caller who is allowed.
_REPLICAS: list[ServerThread] = []  # replicas examples started, stopped after each test


@pytest.fixture(autouse=True)
def _stop_replicas() -> Any:
    yield
    while _REPLICAS:
        _REPLICAS.pop().stop()


def _prepare_case(state: str, *, claims: int = 0, **json: Any) -> Example:
    """A lifecycle case of the seed project in dev, in ``state`` (a fresh one per request), claimed ``claims``
    times."""

    def example(platform: Platform, _seed: Seed, _user: str) -> Request:
        from harbourmaster.store.tables import LifecycleCaseRow

        with platform.db.transaction() as session:
            row = LifecycleCaseRow(
                project=PROJECT, environment="dev", state=state, trigger={}, policy={}, steps=[], claims=claims
            )
            session.add(row)
            session.flush()
            case_id = row.id
        return Request(path={"case_id": case_id}, json=json or None)

    return example


def _prepare_load_test(platform: Platform, _seed: Seed, _user: str) -> Request:
    """A replica of test serving v1 (started once per test), for a load test of a few requests."""
    if not _REPLICAS:
        _REPLICAS.append(ServerThread(platform, "test").start())
        deadline = time.monotonic() + 60
        while not any(
            r.address == _REPLICAS[0].url and (r.loaded.get(PROJECT) or {}).get("champion", {}).get("version") == 1
            for r in platform.replicas.list(SYSTEM, "test")
        ):
            assert time.monotonic() < deadline, "the replica of test did not report v1"
            time.sleep(0.1)
    body = {"rate": 20, "duration": 0.2, "to": "test"}
    return Request(path={"project": PROJECT, "version": 1, "environment": "test"}, json=body)


EXAMPLES: dict[tuple[str, str], list[Example]] = {
    ("GET", "/health"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/projects"): [lambda _p, _s, _u: Request()],
    ("POST", "/api/v1/projects"): [lambda _p, s, _u: Request(json={"name": s.unique("scratch-project")})],
    ("GET", "/api/v1/projects/{project}"): [lambda _p, _s, _u: Request(path={"project": PROJECT})],
    ("GET", "/api/v1/projects/{project}/versions"): [lambda _p, _s, _u: Request(path={"project": PROJECT})],
    ("POST", "/api/v1/projects/{project}/versions"): [_register],
    ("GET", "/api/v1/projects/{project}/versions/{version}"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT, "version": 1})
    ],
    ("GET", "/api/v1/projects/{project}/versions/{version}/inspect"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT, "version": 1})
    ],
    ("GET", "/api/v1/projects/{project}/trust"): [lambda _p, _s, _u: Request(path={"project": PROJECT})],
    ("POST", "/api/v1/projects/{project}/trust"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT}, json={"add": ["scratch.Transformer"]})
    ],
    ("GET", "/api/v1/projects/{project}/diff"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT}, params={"old": 1, "new": 2})
    ],
    ("PUT", "/api/v1/projects/{project}/versions/{version}/tags/{key}"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT, "version": 1, "key": "candidate"}, json={"value": "yes"})
    ],
    ("DELETE", "/api/v1/projects/{project}/versions/{version}/tags/{key}"): [_prepare_tag],
    ("GET", "/api/v1/bundles/{digest}/manifest"): [lambda _p, s, _u: Request(path={"digest": s.digest})],
    ("GET", "/api/v1/bundles/{digest}/files/{path}"): [
        lambda _p, s, _u: Request(path={"digest": s.digest, "path": s.bundle_file})
    ],
    ("GET", "/api/v1/runs"): [lambda _p, _s, _u: Request(params={"project": PROJECT})],
    ("GET", "/api/v1/environments"): [lambda _p, _s, _u: Request()],
    ("PUT", "/api/v1/environments/{environment}"): [_configure("dev"), _configure("prod")],
    ("GET", "/api/v1/deployments"): [lambda _p, _s, _u: Request(params={"project": PROJECT})],
    ("GET", "/api/v1/deployments/{project}/{environment}"): [_dep("dev"), _dep("prod")],
    ("POST", "/api/v1/deployments/{project}/{environment}"): [_dep("dev", version=1), _dep("prod", version=1)],
    ("POST", "/api/v1/deployments/{project}/{environment}/rollback"): [
        _dep("dev", to_version=1),
        _dep("prod", to_version=1),
    ],
    ("PUT", "/api/v1/deployments/{project}/{environment}/challenger"): [
        _dep("dev", version=2, mode="canary", weight=5),
        _dep("prod", version=2, mode="shadow"),
    ],
    ("DELETE", "/api/v1/deployments/{project}/{environment}/challenger"): [_dep("dev"), _dep("prod")],
    ("PUT", "/api/v1/deployments/{project}/{environment}/fallback"): [
        _dep("dev", failover=2, fallback={}),
        _dep("prod", failover=2, fallback={}),
    ],
    ("PUT", "/api/v1/deployments/{project}/{environment}/options"): [
        _dep("dev", options={}),
        _dep("prod", options={}),
    ],
    ("GET", "/api/v1/deployments/{project}/events"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT}, params={"environment": "prod"})
    ],
    ("GET", "/api/v1/projects/{project}/history"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT}, params={"environment": "prod"})
    ],
    ("POST", "/api/v1/promotions"): [
        lambda _p, _s, _u: Request(json={"project": PROJECT, "version": 1, "to": "test"}),
        lambda _p, _s, _u: Request(json={"project": PROJECT, "version": 1, "to": "prod"}),
    ],
    ("GET", "/api/v1/promotions"): [lambda _p, _s, _u: Request(params={"project": PROJECT})],
    ("GET", "/api/v1/promotions/check"): [
        lambda _p, _s, _u: Request(params={"project": PROJECT, "version": "3", "to": "prod"})
    ],
    ("POST", "/api/v1/approvals"): [
        lambda _p, _s, _u: Request(json={"project": PROJECT, "version": 3, "environment": "prod", "comment": "ok"})
    ],
    ("GET", "/api/v1/approvals"): [lambda _p, _s, _u: Request(params={"project": PROJECT})],
    ("GET", "/api/v1/approvals/pending"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/whoami"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/users"): [lambda _p, _s, _u: Request()],
    ("POST", "/api/v1/users"): [lambda _p, s, _u: Request(json={"name": s.unique("newcomer"), "roles": ["viewer"]})],
    ("PUT", "/api/v1/users/{name}/roles"): [
        lambda _p, _s, _u: Request(path={"name": "scratch"}, json={"roles": ["viewer"]})
    ],
    ("PUT", "/api/v1/users/{name}/disabled"): [
        lambda _p, _s, _u: Request(path={"name": "scratch"}, json={"disabled": False})
    ],
    ("POST", "/api/v1/users/{name}/grants"): [
        lambda _p, _s, _u: Request(path={"name": "scratch"}, json={"environment": "prod", "permission": "predict"})
    ],
    ("DELETE", "/api/v1/users/{name}/grants/{environment}/{permission}"): [_prepare_grant],
    ("POST", "/api/v1/tokens"): [lambda _p, s, _u: Request(json={"name": s.unique("mine"), "expires_in_days": 1})],
    ("GET", "/api/v1/tokens"): [lambda _p, _s, _u: Request()],
    ("DELETE", "/api/v1/tokens/{token_id}"): [_prepare_own_token],
    ("GET", "/api/v1/duty-requests"): [lambda _p, _s, _u: Request(params={"status": "all"})],
    ("POST", "/api/v1/duty-requests/{request_id}/confirm"): [_prepare_duty_request],
    ("POST", "/api/v1/duty-requests/{request_id}/reject"): [_prepare_duty_request],
    ("GET", "/api/v1/duties"): [lambda _p, _s, _u: Request()],
    ("PUT", "/api/v1/duties/mode"): [lambda _p, _s, _u: Request(json={"mode": "two-admins"})],
    ("PUT", "/api/v1/duties/token-limits/{role}"): [
        lambda _p, _s, _u: Request(path={"role": "auditor"}, json={"max_lifetime_seconds": None})
    ],
    ("GET", "/api/v1/audit/verify"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/audit/events"): [lambda _p, _s, _u: Request(params={"limit": 5})],
    ("GET", "/api/v1/audit/export"): [lambda _p, _s, _u: Request(params={"format": "csv"})],
    ("GET", "/api/v1/audit/public-key"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/dataplane/{environment}/state"): [_dataplane("dev"), _dataplane("prod")],
    ("GET", "/api/v1/dataplane/{environment}/bundles/{digest}/manifest"): [_dataplane("dev")],
    ("GET", "/api/v1/dataplane/{environment}/bundles/{digest}/files/{path}"): [_dataplane("prod")],
    ("POST", "/api/v1/dataplane/{environment}/heartbeats"): [_dataplane("dev", json=HEARTBEAT)],
    ("POST", "/api/v1/dataplane/{environment}/predictions"): [_dataplane("dev", params={"key": PREDICTION_KEY})],
    ("POST", "/api/v1/dataplane/{environment}/authorize"): [_dataplane("prod", json={"token": "hm_x"})],
    ("POST", "/api/v1/dataplane/{environment}/feedback/{project}"): [
        _dataplane("dev", json={"feedback": [{"request_id": "r", "value": 1}]})
    ],
    ("POST", "/api/v1/dataplane/{environment}/runs"): [_dataplane("dev", json=SCORE_RUN)],
    ("POST", "/api/v1/dataplane/{environment}/refusals"): [_dataplane("prod", json={"refusals": []})],
    ("POST", "/api/v1/replica-credentials"): [
        lambda _p, s, _u: Request(json={"environment": "prod", "name": s.unique("web")})
    ],
    ("GET", "/api/v1/replica-credentials"): [lambda _p, _s, _u: Request()],
    ("DELETE", "/api/v1/replica-credentials/{credential_id}"): [_prepare_credential],
    ("GET", "/api/v1/replicas"): [lambda _p, _s, _u: Request(params={"environment": "prod"})],
    ("GET", "/api/v1/runs/{run_id}"): [lambda _p, _s, _u: Request(path={"run_id": 1})],
    ("GET", "/api/v1/predictions/{project}/{environment}"): [_dep("dev"), _dep("prod")],
    ("POST", "/api/v1/drift/{project}/{environment}"): [_dep("dev", window="1h"), _dep("prod", window="1h")],
    ("GET", "/api/v1/drift/{project}/{environment}/history"): [_dep("dev"), _dep("prod")],
    ("POST", "/api/v1/quality/{project}/{environment}"): [_dep("dev", window="1h"), _dep("prod", window="1h")],
    ("GET", "/api/v1/quality/{project}/{environment}/history"): [_dep("dev"), _dep("prod")],
    ("POST", "/api/v1/evidence/{project}/{version}/{environment}"): [
        lambda _p, _s, _u: Request(path={"project": PROJECT, "version": 3, "environment": "prod"}, json={})
    ],
    ("GET", "/api/v1/evidence/{project}"): [lambda _p, _s, _u: Request(path={"project": PROJECT})],
    ("POST", "/api/v1/loadtest/{project}/{version}/{environment}"): [_prepare_load_test],
    ("GET", "/api/v1/sla/{project}/{environment}"): [_dep("dev"), _dep("prod")],
    ("GET", "/api/v1/alerts"): [lambda _p, _s, _u: Request(params={"all": True})],
    ("GET", "/api/v1/alerts/{alert_id}"): [_prepare_alert],
    ("GET", "/api/v1/alerts/{alert_id}/deliveries"): [_prepare_alert],
    ("POST", "/api/v1/alerts/{alert_id}/ack"): [_prepare_alert],
    ("POST", "/api/v1/alerts/{alert_id}/silence"): [_prepare_alert],
    ("POST", "/api/v1/monitors/run"): [lambda _p, _s, _u: Request()],
    ("GET", "/api/v1/monitors/runs"): [lambda _p, _s, _u: Request()],
    ("POST", "/api/v1/prediction-log/{environment}/compact"): [_env("dev"), _env("prod")],
    ("POST", "/api/v1/prediction-log/{environment}/retention"): [_env("dev"), _env("prod")],
    ("GET", "/api/v1/notifiers"): [lambda _p, _s, _u: Request()],
    ("POST", "/api/v1/notifiers"): [lambda _p, s, _u: Request(json={"name": s.unique("journal"), "kind": "log"})],
    ("DELETE", "/api/v1/notifiers/{name}"): [_prepare_notifier],
    ("POST", "/api/v1/retrain/{project}/{environment}/rows"): [_labelled("dev"), _labelled("prod")],
    ("POST", "/api/v1/evaluations/{project}/{environment}/rows"): [_labelled("dev"), _labelled("prod")],
    ("POST", "/api/v1/evaluations/{project}/{version}/{environment}"): [_evaluation],
    ("GET", "/api/v1/challenger-reports/{report_id}"): [_challenger_report],
    ("GET", "/api/v1/cases"): [lambda _p, _s, _u: Request(params={"project": PROJECT})],
    ("GET", "/api/v1/cases/{case_id}"): [_prepare_case("open")],
    ("POST", "/api/v1/cases/claim"): [lambda _p, _s, _u: Request(json={"worker": "matrix"})],
    ("POST", "/api/v1/cases/{case_id}/steps"): [
        _prepare_case("running", step="retrain", status="failed", error="the matrix's example")
    ],
    ("POST", "/api/v1/cases/{case_id}/lease"): [_prepare_case("running", claims=1, claim=1, lease_seconds=30)],
    ("POST", "/api/v1/cases/{case_id}/close"): [_prepare_case("running", reason="the matrix's example")],
    ("GET", "/api/v1/rollouts"): [lambda _p, _s, _u: Request(params={"project": PROJECT, "active": True})],
    ("GET", "/api/v1/rollouts/{rollout_id}"): [_rollout(None)],
    ("POST", "/api/v1/rollouts/{rollout_id}/{action}"): [
        _rollout("pause"),
        _rollout("resume", paused=True),
        _rollout("abort"),
    ],
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def declaration_problems(spec: dict[str, Any]) -> list[str]:
    """Every operation must declare a known permission and have an example request (and vice versa)."""
    problems = []
    published = set()
    for method, path, op in operations(spec):
        published.add((method, path))
        permission = op.get("x-permission")
        if permission not in DECLARED:
            problems.append(f"{method} {path} declares x-permission={permission!r} (want one of {sorted(DECLARED)})")
        if (method, path) not in EXAMPLES:
            problems.append(f"{method} {path} has no example request in EXAMPLES: add one to the matrix")
        param = op.get("x-environment-param")
        if param and not (param.startswith("body.") or "{" + param + "}" in path):
            problems.append(f"{method} {path} names x-environment-param={param!r}, which is not one of its fields")
    problems += [
        f"{m} {p} is in EXAMPLES but the server no longer publishes it" for m, p in EXAMPLES.keys() - published
    ]
    return problems


def test_every_operation_declares_a_permission_and_has_an_example(tmp_path):
    from tests.conftest import make_settings

    platform = Platform(make_settings(tmp_path / "home"))
    try:
        spec = create_app(platform).openapi()
    finally:
        platform.close()
    assert declaration_problems(spec) == []
    assert len(operations(spec)) >= 40


def _seed(platform: Platform, demo_project) -> Seed:
    """A project trained by a data scientist: v1 champion in dev, test and prod (v2 was before it in
    prod, so it may come back as challenger or failover), v3 for approvers to sign off."""
    dana, olga = actor(platform, "dana"), actor(platform, "olga")
    assert [train(platform, demo_project) for _ in range(3)] == [1, 2, 3]
    for number in (2, 1):
        platform.deployments.deploy(dana, PROJECT, number, "dev")
        serve_champion(platform, PROJECT, "dev")
        platform.promotions.promote(dana, PROJECT, number, "test")
        serve_champion(platform, PROJECT, "test")
        for approver in ("abe", "amy"):
            platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
        platform.promotions.promote(olga, PROJECT, number, "prod")
    platform.identity.create_user(SYSTEM, "scratch", ["viewer"])
    detail = platform.registry.get_version(SYSTEM, PROJECT, 1)
    bundle = platform.registry.read_bundle(SYSTEM, detail.digest)
    return Seed(
        digest=detail.digest,
        bundle_file=sorted(bundle.files)[0],
        manifest=bundle.manifest.model_dump_json(),
        files=dict(bundle.files),
    )


def _environment_of(op: dict[str, Any], request: Request) -> str | None:
    param = op.get("x-environment-param")
    if not param:
        return None
    if param.startswith("body."):
        return request.json[param.removeprefix("body.")]
    return request.path[param]


def _expected_allowed(platform: Platform, user: str, permission: str, environment: str | None) -> bool:
    """What the permission table says for this user (roles and grants) here."""
    if permission in (AUTHENTICATED, PUBLIC):
        return True
    if permission == REPLICA:
        return False  # the matrix's callers are people; tests/dataplane checks replica credentials
    roles, grants = USERS[user]
    return is_allowed(
        frozenset(roles),
        Permission(permission),
        guarded=environment is not None and platform.access.is_guarded(environment),
        grants=frozenset(grants),
        environment=environment,
    )


def _denied_count(platform: Platform) -> int:
    with platform.db.reader() as session:
        # Refusals of a role or grant (401s and bad input have their own entries: request.*).
        return session.scalar(
            select(func.count(AuditEventRow.id)).where(
                AuditEventRow.outcome == "denied", AuditEventRow.action.not_like("request.%")
            )
        )


def test_authorization_matrix(platform: Platform, demo_project):
    tokens = create_users(platform)
    seed = _seed(platform, demo_project)
    denied_before = _denied_count(platform)
    with live_server(platform) as live:
        live.tokens = tokens
        spec = live.http(None).get("/openapi.json").json()
        assert declaration_problems(spec) == []

        clients = {user: live.http(user) for user in MATRIX_USERS}
        anonymous, forged = live.http(None), live.http(None)
        forged.headers["Authorization"] = "Bearer hm_" + "f" * 43
        checked: list[tuple[str, str, str, int]] = []
        failures: list[str] = []
        forbidden = 0
        for method, template, op in operations(spec):
            permission = op["x-permission"]
            for example in EXAMPLES[(method, template)]:
                # Anonymous and forged tokens first: never past the door (except public routes).
                probe = example(platform, seed, "root")
                url = template.format(**probe.path)
                for nobody in (anonymous, forged):
                    response = nobody.request(method, url, params=probe.params, json=probe.json)
                    expected = 200 if permission == PUBLIC else 401
                    if response.status_code != expected:
                        failures.append(f"{method} {url} without a valid token: {response.status_code} != {expected}")
                    elif expected == 401:
                        error = response.json()["error"]
                        assert error["code"] == "unauthenticated" and error["message"] and error["hint"]
                if permission == PUBLIC:
                    continue
                for user, label in MATRIX_USERS.items():
                    request = example(platform, seed, user)
                    url = template.format(**request.path)
                    environment = _environment_of(op, request)
                    allowed = _expected_allowed(platform, user, permission, environment)
                    response = clients[user].request(
                        method, url, params=request.params, json=request.json, data=request.data, files=request.files
                    )
                    checked.append((method, url, label, response.status_code))
                    status = response.status_code
                    scope = f" in {environment}" if environment else ""
                    where = f"{method} {url} as {user} ({label}, needs {permission}{scope})"
                    if allowed and not 200 <= status < 300:
                        failures.append(f"{where}: expected 2xx, got {status} {response.text[:300]}")
                    elif not allowed:
                        forbidden += 1
                        if status != 403:
                            failures.append(f"{where}: expected 403, got {status} {response.text[:300]}")
                        else:
                            error = response.json()["error"]
                            if error["code"] != "forbidden" or user not in error["message"] or not error["hint"]:
                                failures.append(f"{where}: unclear refusal {error}")
        for client in (*clients.values(), anonymous, forged):
            client.close()

    assert failures == [], "\n".join(failures)
    # Every role saw both outcomes somewhere, and every refusal was written to the audit log.
    assert len(checked) >= 7 * 50
    assert forbidden > 50
    assert _denied_count(platform) - denied_before == forbidden
    assert platform.audit.verify(SYSTEM).ok


def test_matrix_expectations_follow_the_table():
    """A sanity check of the derivation itself: grants matter only on guarded environments."""
    operator = frozenset({"operator"})
    assert is_allowed(operator, Permission.DEPLOY, guarded=False, environment="dev")
    assert not is_allowed(operator, Permission.DEPLOY, guarded=True, environment="prod")
    assert is_allowed(
        operator, Permission.DEPLOY, guarded=True, grants=frozenset({("prod", "deploy")}), environment="prod"
    )
    assert not is_allowed(frozenset({"admin"}), Permission.APPROVE)
    assert json.dumps(sorted(MATRIX_USERS)) == json.dumps(sorted(set(USERS) - {"amy"}))
