"""Fixtures of the console's browser tests (the harness is in ``browser.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console.browser import Browser, ConsoleSite, require_browser, screenshot_dir, start_site
from shared_demo import shared_demo


@pytest.fixture(scope="session")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    """The demo's control plane, enriched (see ``browser.prepare_store``), served on loopback."""
    require_browser()
    site = start_site(tmp_path_factory.mktemp("console-site"), shared_demo(tmp_path_factory))
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def browser(
    console_site: ConsoleSite, screenshots: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """One headless chromium for the session (tests log in as whom they need)."""
    driver = Browser(console_site, screenshots, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.close()
