"""Refusals never hold up other callers: permission checks run before any write transaction opens
(issue 8 item 10: on SQLite an unauthorised call froze every caller for 30 s)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from governance.helpers import SYSTEM, create_users, live_server
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import PermissionDeniedError
from harbourmaster.store.tables import AuditEventRow

ROUNDS = 6  # per worker; bounded
WORKERS = 6


def _denied_entries(platform) -> int:
    with platform.db.reader() as session:
        return session.scalar(select(func.count()).where(AuditEventRow.outcome == "denied")) or 0


def test_a_refusal_inside_a_write_transaction_is_audited_after_it_not_nested(platform):
    """The safety net: a require() that fails with a transaction open defers its audit entry."""
    create_users(platform)
    viewer = platform.identity.actor_for("vera")
    before = _denied_entries(platform)
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError), platform.db.transaction():
        platform.access.require(viewer, Permission.ADMINISTER, target="users")
    assert time.monotonic() - started < 10  # nested, it waited for SQLite's busy timeout (30 s)
    assert _denied_entries(platform) == before + 1


@pytest.mark.slow
def test_concurrent_allowed_and_refused_calls_all_complete(platform):
    tokens = create_users(platform)
    root_token_id = platform.identity.list_tokens(SYSTEM, "root")[0].id
    with live_server(platform) as live:
        live.tokens = tokens
        clients = {user: live.http(user) for user in ("vera", "root", "dana", "olga")}
        calls = [
            # (client, method, path, json, expected status)
            ("vera", "GET", "/api/v1/projects", None, 200),
            ("vera", "DELETE", f"/api/v1/tokens/{root_token_id}", None, 403),  # someone else's token
            ("dana", "POST", "/api/v1/users", {"name": "mallory", "roles": ["admin"]}, 403),
            ("vera", "PUT", "/api/v1/environments/prod", {"config": {"guarded": False}}, 403),
            ("olga", "GET", "/api/v1/deployments", None, 200),
            ("root", "POST", "/api/v1/tokens", {"name": "t"}, 201),
            ("dana", "POST", "/api/v1/deployments/p/prod", {"version": 1}, 403),
        ]
        denied_before = _denied_entries(platform)

        def worker(offset: int) -> list[tuple[int, int, float]]:
            results = []
            for i in range(ROUNDS):
                user, method, path, body, expected = calls[(offset + i) % len(calls)]
                started = time.monotonic()
                response = clients[user].request(method, path, json=body, timeout=25)
                results.append((expected, response.status_code, time.monotonic() - started))
            return results

        started = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = [item for chunk in pool.map(worker, range(WORKERS)) for item in chunk]
        elapsed = time.monotonic() - started
        for client in clients.values():
            client.close()
    assert len(outcomes) == ROUNDS * WORKERS
    assert [status for _, status, _ in outcomes] == [expected for expected, _, _ in outcomes]
    refused = sum(1 for expected, _, _ in outcomes if expected == 403)
    assert _denied_entries(platform) - denied_before == refused  # each refusal audited exactly once
    assert elapsed < 120, f"{len(outcomes)} calls took {elapsed:.0f}s"
