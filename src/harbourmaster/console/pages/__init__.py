"""The console's pages, in navigation order. Adding a page: one module here (``router``, ``NAV``), one
line below, its templates; nothing else changes."""

from __future__ import annotations

from types import ModuleType

from harbourmaster.console.pages import (
    approvals,
    audit,
    deployment,
    drift,
    overview,
    project,
    runs,
)

PAGES: tuple[ModuleType, ...] = (
    overview,
    project,
    deployment,
    drift,
    runs,
    approvals,
    audit,
)


def navigation() -> list[tuple[str, str]]:
    """(label, path under /console) of the pages that appear in the navigation bar."""
    return [page.NAV for page in PAGES if page.NAV is not None]
