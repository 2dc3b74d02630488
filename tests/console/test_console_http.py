"""The console over real HTTP on loopback, without a browser: sessions, cookies, CSRF, redirects,
refusals and their audit entries, vendored files, pagination."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from console.flood import login_flood
from harbourmaster.api.app import create_app
from harbourmaster.config import Settings
from harbourmaster.console.render import STATIC
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import ConsoleSessionRow
from loopback import serve_in_thread

SYSTEM = Actor.system("console-tests")
AUDITOR = Actor(name="auditor", roles=frozenset({"auditor"}))


@pytest.fixture
def site(sqlite_settings: Settings) -> Iterator[tuple[Platform, str, dict[str, str]]]:
    platform = Platform(sqlite_settings)
    tokens = {}
    for name, roles in (("root", ["admin"]), ("vera", ["viewer"]), ("rita", ["approver"])):
        platform.identity.create_user(SYSTEM, name, roles)
        tokens[name] = platform.identity.create_token(SYSTEM, name, "console").secret
    with serve_in_thread(create_app(platform)) as url:
        yield platform, url, tokens
    platform.close()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(client: httpx.Client, token: str, next_path: str = "/console/") -> httpx.Response:
    form = client.get("/console/login")
    return client.post("/console/login", data={"token": token, "csrf": _csrf(form.text), "next": next_path})


def audit_actions(platform: Platform) -> list[tuple[str, str, str]]:
    return [(e["actor"], e["action"], e["outcome"]) for e in platform.audit.entries(AUDITOR)]


def test_a_session_cookie_carries_no_token_and_logging_out_ends_it(site) -> None:
    platform, url, tokens = site
    with httpx.Client(base_url=url) as client:
        assert client.get("/console/").status_code == 303  # not logged in: to the login page
        answer = login(client, tokens["root"])
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("hm_console="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http on loopback; https sets it
        assert tokens["root"] not in cookie and hashlib.sha256(tokens["root"].encode()).hexdigest() not in cookie
        page = client.get("/console/")
        assert page.status_code == 200 and "root" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert client.post("/console/logout", data={"csrf": _csrf(page.text)}).status_code == 303
        assert client.get("/console/").status_code == 303
    assert ("root", "console.login", "allowed") in audit_actions(platform)
    assert ("root", "console.logout", "allowed") in audit_actions(platform)


def test_sessions_live_in_the_database_across_processes_and_restarts(settings: Settings) -> None:
    """A session opened on one control plane is valid on another app on the same store (a second
    worker, or the same server after a restart); the database keeps the id's hash, never the id; a
    log-out on one ends it on the other, even for a client that kept the old cookie."""
    first = Platform(settings)
    first.identity.create_user(SYSTEM, "root", ["admin"])
    token = first.identity.create_token(SYSTEM, "root", "console").secret
    with serve_in_thread(create_app(first)) as url, httpx.Client(base_url=url) as client:
        assert login(client, token).status_code == 303
        session_id = client.cookies["hm_console"]
        assert client.get("/console/").status_code == 200
    first.close()  # the first server is gone (a restart)

    second = Platform(settings)
    with second.db.reader() as db:
        stored = db.scalars(select(ConsoleSessionRow)).all()
    assert [row.id_hash for row in stored] == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert stored[0].token_hash == hashlib.sha256(token.encode()).hexdigest() and stored[0].user == "root"
    worker_platform = Platform(settings)  # a second worker process has a platform of its own
    with (
        serve_in_thread(create_app(second)) as url,
        serve_in_thread(create_app(worker_platform)) as other,
        httpx.Client(base_url=url, cookies={"hm_console": session_id}) as client,
        httpx.Client(base_url=other, cookies={"hm_console": session_id}) as worker,
    ):
        page = client.get("/console/")
        assert page.status_code == 200 and "root" in page.text  # no new log-in after the restart
        assert worker.get("/console/audit").status_code == 200  # another worker: the same session
        assert client.post("/console/logout", data={"csrf": _csrf(page.text)}).status_code == 303
        ended = worker.get("/console/audit")  # the kept cookie is refused by the other worker
        assert ended.status_code == 303 and ended.headers["location"].startswith("/console/login")
        assert worker.post("/console/logout", data={"csrf": _csrf(page.text)}).status_code == 403
    worker_platform.close()
    with second.db.reader() as db:
        assert db.scalars(select(ConsoleSessionRow)).all() == []
    second.close()


def test_bad_tokens_and_forged_login_forms_are_refused_and_audited(site) -> None:
    platform, url, _tokens = site
    with httpx.Client(base_url=url) as client:
        refused = login(client, "hm_not-a-token-at-all-but-long-enough")
        assert refused.status_code == 401 and "the API token is not valid" in refused.text
        assert "hm_console=" not in refused.headers.get("set-cookie", "")
        forged = client.post("/console/login", data={"token": "x", "csrf": "guess", "next": "/console/"})
        assert forged.status_code == 403
    actions = audit_actions(platform)
    assert ("anonymous", "console.login", "denied") in actions
    assert ("anonymous", "request.refused", "denied") in actions


def test_a_flood_of_bad_log_ins_keeps_pages_answered_and_every_refusal_counted(site) -> None:
    """Bad tokens through the login form from another process (bounded: 400 or 6 s) while a person
    loads a page: every bad log-in is a 401, every page load a 200, and the refusals are audited as a
    few entries carrying their counts (per address and reason, one per interval, the last one written
    once the flood stopped), which add up to every refusal."""
    platform, _url, tokens = site
    app = create_app(platform)
    app.state.refusal_tally.interval = 2.0  # a few windows in a short flood (10 s in production)
    since = datetime.now(UTC)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as user:
        assert login(user, tokens["rita"]).status_code == 303
        flood = login_flood(url, user, "/console/approvals", attempts=400, seconds=6.0, threads=4)
        assert flood.attempts >= 20 and flood.statuses == Counter({401: flood.attempts})
        assert flood.page_ms and flood.page_statuses == Counter({200: len(flood.page_ms)})
        deadline = time.monotonic() + 15  # the count still open when the flood stopped is flushed
        while time.monotonic() < deadline:
            denied, total = platform.audit.search(AUDITOR, action="console.login", outcome="denied", since=since)
            if sum(entry["details"]["count"] for entry in denied) >= flood.attempts:
                break
            time.sleep(0.25)
    assert sum(entry["details"]["count"] for entry in denied) == flood.attempts
    assert 2 <= total <= 2 + flood.seconds / 2.0  # the first at once, then at most one per interval
    assert all(entry["details"]["reason"] == "the API token is not valid" for entry in denied)


def test_a_revoked_token_ends_its_session_at_once(site) -> None:
    platform, url, tokens = site
    with httpx.Client(base_url=url) as client:
        login(client, tokens["vera"])
        assert client.get("/console/approvals").status_code == 200
        token_id = platform.identity.list_tokens(SYSTEM, "vera")[0].id
        platform.identity.revoke_token(SYSTEM, token_id)
        answer = client.get("/console/approvals")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")


def test_logging_in_never_sends_the_browser_to_another_site(site) -> None:
    _platform, url, tokens = site
    with httpx.Client(base_url=url) as client:
        for target in ("https://evil.example/", "//evil.example/", "/console/\\evil", "/api/v1/projects"):
            assert login(client, tokens["root"], target).headers["location"] == "/console/"
        assert login(client, tokens["root"], "/console/audit?by=x").headers["location"] == "/console/audit?by=x"


def test_a_viewer_cannot_approve_even_with_a_valid_form(site) -> None:
    platform, url, tokens = site
    with httpx.Client(base_url=url) as client:
        login(client, tokens["vera"])
        csrf = _csrf(client.get("/console/approvals").text)
        form = {"csrf": csrf, "project": "p", "version": "1", "environment": "prod", "decision": "approve"}
        answer = client.post("/console/approvals/decide", data=form)
        assert answer.status_code == 403 and "approve" in answer.text and "<html" in answer.text
        audit = client.get("/console/audit")
        assert audit.status_code == 403 and "Not allowed" in audit.text
    actions = audit_actions(platform)
    assert ("vera", "denied.approve", "denied") in actions and ("vera", "denied.audit", "denied") in actions


def test_a_browser_lands_on_the_console_and_api_clients_keep_json(site) -> None:
    _platform, url, _tokens = site
    with httpx.Client(base_url=url) as client:
        browser = client.get("/", headers={"accept": "text/html,application/xhtml+xml"})
        assert browser.status_code == 303 and browser.headers["location"] == "/console/"
        api = client.get("/")
        assert api.status_code == 404 and api.json()["error"]["code"] == "http_404"
        unauthenticated = client.get("/api/v1/projects", headers={"accept": "text/html"})
        assert unauthenticated.status_code == 401 and "error" in unauthenticated.json()
        missing = client.get("/console/no-such-page")
        assert missing.status_code == 404 and "no such console page" in missing.text


def test_vendored_files_are_served_as_recorded(site) -> None:
    _platform, url, _tokens = site
    recorded = (STATIC / "vendor" / "VENDORED.md").read_text()
    with httpx.Client(base_url=url) as client:
        for name in ("htmx.min.js", "chart.umd.min.js"):
            body = client.get(f"/console/static/vendor/{name}").content
            assert hashlib.sha256(body).hexdigest() in recorded, name
            assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() in recorded


def test_the_audit_log_is_paged_and_filtered(site) -> None:
    platform, url, tokens = site
    for index in range(60):
        platform.audit.record_alone(SYSTEM, "console.test", f"item:{index}")
    with httpx.Client(base_url=url) as client:
        login(client, tokens["root"])
        first = client.get("/console/audit?action=console.test")
        assert first.text.count('data-action="console.test"') == 50 and "1\u201350 of 60" in first.text
        second = client.get("/console/audit?action=console.test&offset=50")
        assert second.text.count('data-action="console.test"') == 10 and "item:0<" in second.text
        # The older/newer links page by key (after an entry's number), keeping the filter.
        for _ in range(3):  # other entries interleave: the filter must still hold on the keyed pages
            platform.audit.record_alone(SYSTEM, "console.other", "item:x")
        older = _link(first.text, "next")
        assert "before=" in older and "action=console.test" in older and "offset=50" in older
        keyed = client.get(older)
        assert _items(keyed.text) == _items(second.text) and "51\u201360 of 60" in keyed.text
        assert _items(client.get(_link(keyed.text, "prev")).text) == _items(first.text)
        middle = client.get("/console/audit?action=console.test&offset=20&size=20")
        back = _link(client.get(_link(middle.text, "next")).text, "prev")
        assert "after=" in back and _items(client.get(back).text) == _items(middle.text)
        one = client.get("/console/audit?target=item:59")
        assert one.text.count('data-action="console.test"') == 1
        bad = client.get("/console/audit?since=yesterday")
        assert bad.status_code == 422 and "is not a time" in bad.text


def _items(html: str) -> list[str]:
    return re.findall(r"item:\d+", html)


def _link(html: str, rel: str) -> str:
    return re.search(rf'href="([^"]+)" rel="{rel}"', html).group(1).replace("&amp;", "&")


def test_the_project_page_pages_versions_newest_first(site, tmp_path: Path) -> None:
    platform, url, tokens = site
    platform.registry.create_project(SYSTEM, "empty", "no version yet")
    with httpx.Client(base_url=url) as client:
        login(client, tokens["vera"])
        page = client.get("/console/projects/empty")
        assert page.status_code == 200 and "Never served anywhere." in page.text
        assert client.get("/console/projects/nope").status_code == 404
