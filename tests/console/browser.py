"""Browser tests' harness for the console: a demo-filled control plane on loopback, people's tokens, and a
headless Debian chromium driven by Selenium through Debian's chromedriver (never a downloaded driver).

Reused by every console page's tests (``tests/console/conftest.py`` exposes the fixtures):

- ``ConsoleSite``: a copy of the session's demo store (``shared_demo``), then the demo's control-plane store
  (``<home>/demo/control-plane``: root, sam, dana, olga, rita, bob, ada) gets, through the services
  with an audited break-glass actor, a viewer (``vera``), an approver who also trains (``alex``), tokens
  for all of them, two more versions of breast-cancer (the sandbox's v2 and v3 bundles, registered by
  alex and dana; dana's is dev's champion, alex's a 10% canary there) and one sign-off required by
  test; then ``harbourmaster server`` serves that store on a loopback port in a subprocess.
- ``Browser``: log in as somebody, open a console page, read the JavaScript console, save screenshots.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback import free_port
from shared_demo import DemoRun

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PROJECT = "breast-cancer"
PEOPLE = {  # user -> roles; the demo creates all but vera and alex
    "root": ["admin"],
    "dana": ["data-scientist"],
    "rita": ["approver"],
    "ada": ["auditor"],
    "vera": ["viewer"],
    "alex": ["approver", "data-scientist"],
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)
SERVER_START_SECONDS = 60.0


def browser_missing() -> str | None:
    """Why a browser test cannot run here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip with the reason when the browser is missing; in CI (CI=true) that is a failure instead."""
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


def _env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    return env


@dataclass
class ConsoleSite:
    """A running control plane filled by the demo, and a token per person."""

    url: str
    home: Path
    tokens: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    facts: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def prepare_store(home: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """People, tokens and a version waiting for a sign-off, on the demo's control-plane store."""
    from harbourmaster.config import Settings
    from harbourmaster.core.environments import ApprovalRequirement
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform

    sandbox = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    store = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home / "demo" / "control-plane")}))
    try:
        rescuer = Actor.break_glass("console-tests")  # audited, as `HARBOURMASTER_BREAK_GLASS=... harbourmaster`
        existing = {user.name for user in store.identity.list_users(rescuer)}
        for name, roles in PEOPLE.items():
            if name not in existing:
                store.identity.create_user(rescuer, name, roles)
        tokens = {
            name: store.identity.create_token(rescuer, name, "console-tests", expires_in=timedelta(hours=6)).secret
            for name in PEOPLE
        }
        owner = Actor.local_owner()
        versions = {v.number: v for v in sandbox.registry.list_versions(owner, PROJECT)}
        registered = {}
        for author, number, note in (("alex", 2, "alex's tuned C"), ("dana", 3, "dana's retrained")):
            bundle = sandbox.registry.read_bundle(owner, versions[number].digest)
            detail = store.registry.register_bundle(store.identity.actor_for(author), PROJECT, bundle, note)
            store.deployments.deploy(store.identity.actor_for(author), PROJECT, detail.number, "dev")
            registered[author] = detail.number
        # alex's version stays in dev as a canary beside dana's champion: both wait for test's sign-off
        store.deployments.set_challenger(
            store.identity.actor_for("alex"), PROJECT, "dev", registered["alex"], mode="canary", weight=10.0
        )
        test = store.environments.get("test")
        config = test.config.model_copy(deep=True)
        config.approvals.required = [ApprovalRequirement(role="approver", count=1)]
        store.environments.configure(store.identity.actor_for("root"), "test", config.model_dump(mode="json"))
        return tokens, {"versions": registered}
    finally:
        sandbox.close()
        store.close()


def start_site(base: Path, demo: DemoRun) -> ConsoleSite:
    home = demo.copy_store(base / "home")
    tokens, facts = prepare_store(home)
    store_home = home / "demo" / "control-plane"
    port = free_port()
    log = base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "harbourmaster", "server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=base,
            env=_env(store_home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    site = ConsoleSite(f"http://127.0.0.1:{port}", store_home, tokens, process, log, facts)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            if httpx.get(f"{site.url}/health", timeout=2).status_code == 200:
                return site
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            site.stop()
            raise RuntimeError(f"harbourmaster server did not start:\n{log.read_text()}")
        time.sleep(0.2)


class Browser:
    """One headless chromium; ``login`` switches the person (cookies are cleared)."""

    def __init__(self, site: ConsoleSite, screenshots: Path, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.site = site
        self.screenshots = screenshots
        self.user: str | None = None

    def close(self) -> None:
        self.driver.quit()

    def login(self, user: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.site.url}/console/login")
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.site.url}/console/login")
        self.driver.find_element(By.ID, "token").send_keys(self.site.tokens[user])
        self.driver.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button[type=submit]").click()
        self.wait_for(lambda d: "/console/login" not in d.current_url, "the console after logging in")
        self.user = user

    def open(self, path: str) -> None:
        self.driver.get(f"{self.site.url}{path}")
        self.wait_for(lambda d: d.execute_script("return document.readyState") == "complete", f"{path} to load")

    def wait_for(self, condition: Any, what: str, timeout: float = 15.0) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(condition, f"waited {timeout:g} s for {what}")

    def text(self, css: str = "main") -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def console_errors(self) -> list[str]:
        """JavaScript errors (and CSP violations) logged since the last call."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def cookie(self, name: str) -> str | None:
        found = self.driver.get_cookie(name)
        return found["value"] if found else None


def screenshot_dir(tmp_factory: pytest.TempPathFactory) -> Path:
    """$HARBOURMASTER_SCREENSHOTS when set, else a temporary folder (printed either way)."""
    wanted = os.environ.get("HARBOURMASTER_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


def copy_screenshot(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
