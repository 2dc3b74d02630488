"""Refusals never hold up other callers: permission checks run before any write transaction opens
(issue 8 item 10: on SQLite an unauthorised call froze every caller for 30 s)."""

from __future__ import annotations

import ast
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

import harbourmaster.services
from governance.helpers import SYSTEM, create_users, live_server
from harbourmaster.api.app import create_app
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import PermissionDeniedError
from harbourmaster.store.tables import AuditEventRow
from loopback import serve_in_thread

SERVICES = Path(harbourmaster.services.__file__).parent
NESTING_CALLS = (".require", ".record_alone", ".audit_guarded_read")
ROUNDS = 6  # per worker; bounded
WORKERS = 6


def _denied_entries(platform) -> int:
    with platform.db.reader() as session:
        return session.scalar(select(func.count()).where(AuditEventRow.outcome == "denied")) or 0


def test_no_service_checks_permission_or_audits_alone_inside_its_write_transaction() -> None:
    """Static guard: ``access.require`` and ``audit.record_alone`` never appear lexically inside a
    ``with ...transaction()`` block of a service (each opens a transaction of its own)."""
    offenders = []
    for path in sorted(SERVICES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.With) and any("transaction" in ast.unparse(i.context_expr) for i in node.items):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Call) and ast.unparse(inner.func).endswith(NESTING_CALLS):
                        offenders.append(f"{path.name}:{inner.lineno} {ast.unparse(inner.func)}")
    assert not offenders, offenders


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


@pytest.mark.slow
def test_a_flood_of_bad_tokens_is_audited_aggregated(platform):
    app = create_app(platform)
    tally = app.state.refusal_tally
    tally.interval = 3600  # one window for the whole flood
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=25) as client:
        statuses = [
            client.get("/api/v1/projects", headers={"Authorization": "Bearer hm_not-a-token"}).status_code
            for _ in range(30)
        ]
        tally.interval = 0  # the window closes: the next refusal writes the count of the flood
        statuses.append(client.get("/api/v1/projects", headers={"Authorization": "Bearer hm_nope"}).status_code)
    assert statuses == [401] * 31
    with platform.db.reader() as session:
        rows = list(session.scalars(select(AuditEventRow).where(AuditEventRow.action == "request.unauthenticated")))
    assert [row.details["count"] for row in rows] == [1, 30]
    assert all(row.outcome == "denied" and row.actor == "anonymous" for row in rows)
