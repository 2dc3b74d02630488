"""Load tests never leave a replica process behind, even when they fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.serving.helpers import reap_started


@pytest.fixture(autouse=True)
def _reap_serve_processes() -> Iterator[None]:
    yield
    reap_started()
