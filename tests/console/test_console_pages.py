"""The console in a real browser (headless Debian chromium), against ``harbourmaster server`` on loopback
serving the demo's control-plane store: pages with real data, an approval from the page that the audit
log then shows, a viewer without buttons, forged form posts refused and audited, no JavaScript error."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from console.browser import PROJECT, Browser, ConsoleSite, copy_screenshot

pytestmark = pytest.mark.slow
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def _no_js_errors(browser: Browser, page: str) -> None:
    errors = browser.console_errors()
    assert not errors, f"{page} logged JavaScript errors: {errors}"


def test_each_page_loads_with_the_demos_data(browser: Browser, console_site: ConsoleSite) -> None:
    browser.login("root")
    browser.open("/console/")
    overview = browser.text()
    assert f"{PROJECT}" in overview and "prod" in overview and "replicas alive" in overview
    prod = browser.find_all(f"tr[data-project='{PROJECT}'][data-environment='prod']")
    # The demo ends with prod serving the version olga retrained on production data (v2), after a canary.
    assert prod and "v2" in prod[0].text, f"prod's champion (v2, the demo's completed canary) is shown: {prod[0].text}"
    dev = browser.find_all(f"tr[data-project='{PROJECT}'][data-environment='dev']")
    assert f"v{console_site.facts['versions']['dana']}" in dev[0].text
    shot = browser.screenshot("overview")
    if os.environ.get("HARBOURMASTER_UPDATE_DOCS_IMAGES"):  # a test run leaves the checkout as it was
        copy_screenshot(shot, DOCS_IMAGES / "console-overview.png")
    _no_js_errors(browser, "overview")

    browser.open("/console/projects")
    assert PROJECT in browser.text("#projects-table")
    browser.open(f"/console/projects/{PROJECT}")
    newest = max(console_site.facts["versions"].values())  # versions are numbered 1..newest
    assert len(browser.find_all("#versions-table tbody tr")) == newest
    assert "mean radius" in browser.text("#schema-table")
    assert re.search(r"\d+ rows, fingerprint [0-9a-f]{16}", browser.text("#lineage")), browser.text("#lineage")
    history = browser.text("#history-table")
    assert "olga" in history and "rita" in history and "bob" in history, "prod: put there by olga, approved by both"
    browser.screenshot("project")
    _no_js_errors(browser, "project")

    browser.open(f"/console/projects/{PROJECT}?old=1&new=3#diff")
    assert "v1 → v3" in browser.text("#diff-result")
    browser.screenshot("project-diff")
    _no_js_errors(browser, "project diff")

    browser.open("/console/approvals")
    rows = browser.find_all("#approvals-table tbody tr")
    assert {row.get_attribute("data-environment") for row in rows} == {"test"}
    browser.screenshot("approvals-admin")
    _no_js_errors(browser, "approvals")

    browser.open("/console/audit")
    assert len(browser.find_all("#audit-table tbody tr")) == 50, "the first page of a long log"
    assert "older" in browser.text(".pager") and browser.find_all(".pager a[rel=next]")
    browser.find_all("#verify-chain")[0].click()  # htmx posts (with the CSRF token) and swaps the report in
    browser.wait_for(lambda d: d.find_elements("css selector", "#chain-report"), "the chain's verification")
    assert browser.find_all("#chain-report")[0].get_attribute("data-ok") == "true"
    assert "entries checked" in browser.text("#chain-status") and "by root" in browser.text("#chain-status")
    browser.screenshot("audit")
    _no_js_errors(browser, "audit")


def test_an_approver_approves_from_the_page_and_the_audit_log_shows_it(
    browser: Browser, console_site: ConsoleSite
) -> None:
    version = console_site.facts["versions"]["dana"]
    browser.login("rita")
    browser.open("/console/")
    assert "2 sign-offs" in browser.text("#waiting-for-me"), "dana's and alex's versions wait for rita"
    browser.open("/console/approvals")
    row = browser.find_all(f"#approvals-table tr[data-version='{version}'][data-environment='test']")[0]
    row.find_element("css selector", "input[name=comment]").send_keys("checked in the console")
    browser.screenshot("approvals-approver")
    row.find_element("css selector", "button[value=approve]").click()
    browser.wait_for(lambda d: d.find_elements("css selector", ".notice"), "the decision's notice")
    assert f"approved {PROJECT} v{version} for test" in browser.text(".notice")
    assert "rita (approve)" in browser.text(f"#approvals-table tr[data-version='{version}']")
    _no_js_errors(browser, "approvals after approving")

    browser.login("ada")  # the auditor reads the log
    browser.open("/console/audit?action=version.approve&by=rita")
    first = browser.find_all("#audit-table tbody tr")[0]
    assert first.get_attribute("data-action") == "version.approve"
    assert f"{PROJECT}:v{version}" in first.text and "checked in the console" in first.text and "test" in first.text
    browser.screenshot("audit-approval")
    _no_js_errors(browser, "audit filtered")


def test_the_author_sees_why_there_is_no_button(browser: Browser, console_site: ConsoleSite) -> None:
    version = console_site.facts["versions"]["alex"]
    browser.login("alex")
    browser.open("/console/approvals")
    row = browser.find_all(f"#approvals-table tr[data-version='{version}']")[0]
    assert not row.find_elements("css selector", "button")
    assert "alex is the author of this version and may not sign it off" in row.text
    _no_js_errors(browser, "approvals as the author")


def test_a_viewer_gets_no_button_and_forged_posts_are_refused(browser: Browser, console_site: ConsoleSite) -> None:
    browser.login("vera")
    browser.open("/console/approvals")
    assert not browser.find_all("#approvals-table button"), "a viewer sees the queue, with no button"
    assert not browser.find_all("header nav a[href='/console/audit']"), "no link to a page the viewer may not read"
    assert "vera has no approve permission (viewer)" in browser.text("#approvals-table")
    browser.screenshot("approvals-viewer")
    browser.open("/console/audit")
    assert "audit" in browser.text(".error") and "Not allowed" in browser.text("main h1")
    refused = f"{console_site.url}/console/audit - Failed to load resource: the server responded with a status of 403"
    errors = [error for error in browser.console_errors() if not error.startswith(refused)]
    assert not errors, f"the viewer's pages logged JavaScript errors: {errors}"

    session = browser.cookie("hm_console")
    version = console_site.facts["versions"]["dana"]
    form = {"project": PROJECT, "version": str(version), "environment": "test", "decision": "approve"}
    with httpx.Client(base_url=console_site.url, timeout=10) as client:
        anonymous = client.post("/console/approvals/decide", data=form)
        assert anonymous.status_code == 403
        client.cookies.set("hm_console", session or "", path="/console")
        no_csrf = client.post("/console/approvals/decide", data=form)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        wrong_csrf = client.post("/console/approvals/decide", data={**form, "csrf": "forged"})
        assert wrong_csrf.status_code == 403
        page = client.get("/console/approvals")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        as_viewer = client.post("/console/approvals/decide", data={**form, "csrf": csrf})
        assert as_viewer.status_code == 403 and "approve" in as_viewer.text

    browser.login("ada")
    browser.open("/console/audit?by=vera&outcome=denied")
    denied = browser.text("#audit-table")
    assert denied.count("request.refused") >= 2, "both forged forms (no and wrong CSRF token) are audited"
    assert "denied.approve" in denied, "the viewer's own form with a valid token is refused by the service"
    browser.open("/console/audit?by=anonymous&action=request.refused")
    assert "POST /console/approvals/decide" in browser.text("#audit-table")
    _no_js_errors(browser, "audit of the refusals")
