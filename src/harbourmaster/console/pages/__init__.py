"""The console's pages, in navigation order. Adding a page: one module here (``router``, ``NAV``), one
line below, its templates; nothing else changes.

A page module may also set ``PERMISSION`` (a ``core.permissions.Permission``): its navigation link is
then shown only to those who hold it (the page itself still relies on its services' checks)."""

from __future__ import annotations

from collections.abc import Callable
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
from harbourmaster.core.permissions import Permission

PAGES: tuple[ModuleType, ...] = (
    overview,
    project,
    deployment,
    drift,
    runs,
    approvals,
    audit,
)


def navigation(allowed: Callable[[Permission], bool] = lambda _permission: True) -> list[tuple[str, str]]:
    """(label, path under /console) of the pages in the navigation bar that ``allowed`` lets the reader use."""
    return [
        page.NAV
        for page in PAGES
        if page.NAV is not None and (getattr(page, "PERMISSION", None) is None or allowed(page.PERMISSION))
    ]
