"""Anchors on an object store (moto's standalone S3 server): written once, never replaced, and a
restarted control plane still finds entries cut off before the newest one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_settings
from tests.store.test_s3_artifacts import bucket, s3_endpoint  # noqa: F401 - fixtures

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.audit_anchors import AnchorStore

from .test_audit_tamper import raw

pytestmark = pytest.mark.slow
OWNER = Actor.local_owner()


def test_anchors_on_s3_are_written_once_and_checked(
    bucket: tuple[Any, str],  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    client, name = bucket
    settings = replace(
        make_settings(tmp_path / "home"),
        audit_anchors_url=f"s3://{name}/anchors",
        storage_options={"endpoint_url": s3_endpoint},
    )
    platform = Platform(settings)
    try:
        for project in ("one", "two", "three"):
            platform.registry.create_project(OWNER, project)
        anchor = platform.audit.anchor("by hand")
        assert anchor is not None and anchor["seq"] == 3
        assert platform.audit.anchor("again") is None  # that head is anchored already: never replaced
        keys = [item["Key"] for item in client.list_objects_v2(Bucket=name)["Contents"]]
        assert keys == [f"anchors/{anchor['seq']:012d}-{anchor['hash'][:16]}.json"]
        store = AnchorStore(f"s3://{name}/anchors", {"endpoint_url": s3_endpoint})
        assert [a["seq"] for a in store.read_all()] == [3]
        raw(platform, "DELETE FROM audit_events WHERE seq >= 2")
    finally:
        platform.close()
    fresh = Platform(settings)
    try:
        report = fresh.audit.verify(OWNER)
    finally:
        fresh.close()
    assert (report.ok, report.bad_seq) == (False, 2)
    assert report.problem.startswith("entries 2-3 removed: the chain ends at entry 1, but entry 3 was anchored at")
