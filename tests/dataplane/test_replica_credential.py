"""A replica credential, against a live control plane on SQLite and PostgreSQL: it reads its own
environment's desired state and deployed bundles, writes heartbeats and prediction files of that
environment, checks client tokens and forwards feedback; everything else is a 403, audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harbourmaster.api.app import create_app
from harbourmaster.client import Client
from harbourmaster.services.platform import Platform
from harbourmaster.store.prediction_log import PredictionLog
from loopback import serve_in_thread

from .helpers import OWNER, PROJECT, SYSTEM, prediction_file

KEY = "predictions/env={env}/project=breast-cancer/date=2026-01-01/{hex}.parquet"


def _key(environment: str, hex_digit: str = "a") -> str:
    return KEY.format(env=environment, hex=hex_digit * 32)


def _denied(platform: Platform) -> list[dict]:
    return [entry for entry in platform.audit.entries(SYSTEM) if entry["outcome"] == "denied"]


@pytest.fixture
def world(platform: Platform, demo_project: Path) -> Iterator[dict]:
    platform.identity.create_user(SYSTEM, "root", ["admin"])
    root = platform.identity.create_token(SYSTEM, "root", "tests").secret
    number = platform.training.train(OWNER, demo_project).version.number
    platform.deployments.deploy(OWNER, PROJECT, number, "dev")
    digest = platform.registry.get_version(OWNER, PROJECT, number).digest
    with serve_in_thread(create_app(platform)) as url:
        with Client(url=url, token=root) as admin:
            issued = admin.create_replica_credential("dev", "web")
        headers = {"Authorization": f"Bearer {issued.secret}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=30) as replica:
            yield {"url": url, "root": root, "replica": replica, "issued": issued, "digest": digest}


def test_a_replica_credential_does_its_environments_data_plane_work(platform: Platform, world: dict) -> None:
    replica, digest = world["replica"], world["digest"]
    assert world["issued"].secret.startswith("hmr_")

    state = replica.get("/dataplane/dev/state")
    assert state.status_code == 200, state.text
    body = state.json()
    assert body["environment"]["name"] == "dev" and body["environment"]["config"]["guarded"] is False
    assert [(d["project"], d["champion"]["digest"]) for d in body["deployments"]] == [(PROJECT, digest)]

    manifest = replica.get(f"/dataplane/dev/bundles/{digest}/manifest")
    assert manifest.status_code == 200 and manifest.json()["format"]
    model_file = manifest.json()["model_file"]
    assert replica.get(f"/dataplane/dev/bundles/{digest}/files/{model_file}").content

    beat = {"replica": "web-1", "host": "h1", "pid": 42, "status": "alive", "loaded": {PROJECT: {"revision": 1}}}
    assert replica.post("/dataplane/dev/heartbeats", json=beat).status_code == 204
    assert [r.id for r in platform.replicas.list(SYSTEM, "dev")] == ["web-1"]

    uploaded = replica.post("/dataplane/dev/predictions", params={"key": _key("dev")}, content=prediction_file("dev"))
    assert uploaded.status_code == 201, uploaded.text
    assert PredictionLog(platform.artifacts).count("dev", PROJECT) == 2

    check = replica.post("/dataplane/dev/authorize", json={"token": world["root"]}).json()
    assert check == {"allowed": True, "caller": "root", "code": None, "message": None, "hint": None}
    refused = replica.post("/dataplane/dev/authorize", json={"token": "hm_" + "n" * 40}).json()
    assert refused["allowed"] is False and refused["code"] == "unauthenticated"

    feedback = replica.post(f"/dataplane/dev/feedback/{PROJECT}", json={"feedback": [{"request_id": "r0", "value": 1}]})
    assert feedback.json() == {"stored": 1}
    run = {"project": PROJECT, "version": 1, "status": "succeeded", "rows_in": 3, "rows_out": 3, "input": "in.csv"}
    recorded = replica.post("/dataplane/dev/runs", json=run)
    assert recorded.status_code == 201 and recorded.json()["created_by"].startswith("replica:dev:web#")


def test_a_replica_credential_may_do_nothing_else(platform: Platform, world: dict, demo_project: Path) -> None:
    replica, digest = world["replica"], world["digest"]
    bundle = platform.registry.read_bundle(SYSTEM, digest)
    files = [(path, (path, content, "application/octet-stream")) for path, content in bundle.files.items()]
    upload = {"manifest": bundle.manifest.model_dump_json()}
    before = len(_denied(platform))
    refusals = [
        replica.get("/dataplane/prod/state"),  # another environment
        replica.get(f"/dataplane/test/bundles/{digest}/manifest"),
        replica.post("/dataplane/prod/heartbeats", json={"replica": "x", "host": "h", "pid": 1}),
        replica.post("/dataplane/prod/predictions", params={"key": _key("prod")}, content=prediction_file("prod")),
        replica.post(f"/projects/{PROJECT}/versions", data=upload, files=files),
        replica.post("/projects", json={"name": "mine"}),
        replica.post(f"/deployments/{PROJECT}/dev", json={"version": 1}),
        replica.put("/environments/dev", json={"config": {"guarded": False}}),
        replica.get("/audit/events"),
        replica.get("/projects"),
        replica.get(f"/bundles/{digest}/manifest"),
        replica.get("/whoami"),
        replica.post("/tokens", json={"name": "more"}),
        replica.post("/users", json={"name": "mallory", "roles": ["admin"]}),
        replica.post("/replica-credentials", json={"environment": "prod"}),
        replica.get("/replicas"),
    ]
    for response in refusals:
        assert response.status_code == 403, (response.request.method, response.request.url, response.text)
        error = response.json()["error"]
        assert error["code"] == "forbidden" and "replica" in error["message"] and error["hint"]
    denied = _denied(platform)[before:]
    assert len(denied) == len(refusals)  # every refusal audited, once
    assert {entry["actor"] for entry in denied} == {f"replica:dev:web#{world['issued'].id}"}
    assert platform.registry.list_projects(SYSTEM)[0].version_count == 1

    # Inside its own environment the key and the rows must be its own and sane.
    for key, content in (
        (_key("prod"), prediction_file("prod")),  # a key of another environment
        ("predictions/env=dev/project=breast-cancer/date=2026-01-01/../../../bundles/x.parquet", b"x"),
        (f"bundles/{digest}.json", b"{}"),
        (_key("dev", "b"), b"not parquet"),
        (_key("dev", "c"), prediction_file("prod")),  # rows of another environment under a dev key
        (_key("dev", "d"), prediction_file("dev", project="other")),
    ):
        response = replica.post("/dataplane/dev/predictions", params={"key": key}, content=content)
        assert response.status_code == 422, (key, response.text)
    assert replica.get(f"/dataplane/dev/bundles/{'0' * 64}/manifest").status_code == 404  # not deployed there

    # A person's token is not a replica credential, and a revoked credential opens nothing.
    with httpx.Client(base_url=f"{world['url']}/api/v1", timeout=30) as person:
        person.headers["Authorization"] = f"Bearer {world['root']}"
        assert person.get("/dataplane/dev/state").status_code == 403
        platform.dataplane.revoke_credential(SYSTEM, world["issued"].id)
        gone = replica.get("/dataplane/dev/state")
        assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]
    assert platform.audit.verify(SYSTEM).ok
