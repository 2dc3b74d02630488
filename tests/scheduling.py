"""How the suite's files are spread over the xdist workers: the costliest first, and files that share a
session-scoped server on the same worker, so the two workers finish together and nothing starts twice.

xdist's ``loadfile`` hands out whole files in collection order. Collected in the tree's order, the long
end-to-end files came last and one worker ran them alone while the other idled. ``COST`` lists what
each heavy file took (seconds on a loaded 2-core machine, from ``--durations``; unlisted files are
cheap); refresh it when a file's cost changes a lot. Being wrong only costs balance, never a test.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadFileScheduling

COST: dict[str, float] = {}

# Files that must share a worker: their session fixture (a demo-filled console site) starts once.
SAME_WORKER: dict[str, str] = {
    "tests/console/test_console_charts.py": "tests/console",
    "tests/console/test_console_pages.py": "tests/console",
}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def cost(nodeid: str) -> float:
    path = file_of(nodeid)
    group = SAME_WORKER.get(path)
    if group is not None:
        return sum(seconds for name, seconds in COST.items() if SAME_WORKER.get(name) == group)
    return COST.get(path, 0.0)


def costliest_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: files by falling cost, each file's tests in their own order."""
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-cost(item.nodeid), position[id(item)]))


class GroupedFileScheduling(LoadFileScheduling):
    """``loadfile``, with the files of a ``SAME_WORKER`` group as one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        path = file_of(nodeid)
        return SAME_WORKER.get(path, path)
