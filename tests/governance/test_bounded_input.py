"""Bounded input on the control plane: NUL bytes, out-of-range integers, oversized bodies and texts
are 4xx naming the limit, and every such refusal is audited (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from governance.helpers import Live, create_users, live_server
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow

LIMIT = 64 * 1024


@pytest.fixture
def live(settings) -> Iterator[Live]:
    platform = Platform(replace(settings, max_request_bytes=LIMIT, max_upload_bytes=4 * LIMIT))
    tokens = create_users(platform)
    with live_server(platform) as server:
        server.tokens = tokens
        yield server
    platform.close()


def _refusals(platform: Platform) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(AuditEventRow).where(AuditEventRow.action == "request.refused")))


def _check(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["hint"], error
    for word in words:
        assert word in error["message"], error


def test_nul_bytes_and_out_of_range_integers_are_4xx_and_audited(live):
    with live.http("dana") as dana, live.http("root") as root:
        _check(dana.get("/api/v1/projects/churn%00x"), 400, "NUL")
        _check(dana.get("/api/v1/deployments", params={"environment": "pr\x00od"}), 400, "NUL")
        _check(dana.post("/api/v1/projects", json={"name": "a\x00b"}), 400, "NUL")
        _check(dana.post("/api/v1/projects", content=b'{"name": "ok", "description": "x\\u0000"}'), 400, "NUL")
        _check(root.delete(f"/api/v1/tokens/{2**70}"), 422)
        _check(root.post("/api/v1/deployments/churn/dev", json={"version": 2**70}), 422)
        _check(root.put("/api/v1/environments/qa", json={"config": {}, "position": 2**64}), 422)
        _check(root.post("/api/v1/tokens", json={"name": "t", "expires_in_days": 1e300}), 422)
        # Multipart text fields are checked by the service (PostgreSQL cannot store a NUL byte).
        form = {"manifest": "{}", "description": "bad\x00"}
        assert 400 <= dana.post("/api/v1/projects/churn/versions", data=form).status_code < 500
    refusals = _refusals(live.platform)
    assert len(refusals) >= 8
    assert {row.actor for row in refusals} >= {"dana", "root"}
    assert all(row.outcome == "denied" and row.details["status"] in (400, 422) for row in refusals)


def test_bodies_are_limited_before_they_are_read(live):
    big = {"name": "churn", "description": "x" * (2 * LIMIT)}
    with live.http("dana") as dana:
        _check(dana.post("/api/v1/projects", json=big), 413, f"{LIMIT:,} bytes")
        assert "HARBOURMASTER_MAX_REQUEST_BYTES" in dana.post("/api/v1/projects", json=big).json()["error"]["hint"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"name": "churn", "description": "'
            for _ in range(8):
                yield b"x" * (LIMIT // 4)
            yield b'"}'

        _check(dana.post("/api/v1/projects", content=chunks(), headers={"content-type": "application/json"}), 413)
        # Uploads have their own, larger limit.
        response = dana.post("/api/v1/projects/churn/versions", files={"blob": ("blob", b"x" * (8 * LIMIT))})
        _check(response, 413, "bundle upload")
        assert "HARBOURMASTER_MAX_UPLOAD_BYTES" in response.json()["error"]["hint"]
        # Under the body limit, free text still has a maximum length.
        _check(dana.post("/api/v1/projects", json={"name": "churn", "description": "x" * 20_000}), 422, "description")
        assert dana.post("/api/v1/projects", json={"name": "churn", "description": "fine"}).status_code == 201
    statuses = sorted(row.details["status"] for row in _refusals(live.platform))
    assert statuses.count(413) == 4 and 422 in statuses
