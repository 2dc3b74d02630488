"""Attack: an id past the database's integer range on the routes of separation of duties and tokens.

Found by the red-team pass: ``POST /duty-requests/99999999999999999999/confirm`` and
``DELETE /tokens/99999999999999999999`` answered 500 (OverflowError) with no audit entry.
Bounding path integers belongs to the bounded-input work (issue 7, item 7), which is built
on another branch: strict xfail until it is merged, then this test passes and the marker goes.
"""

from __future__ import annotations

import pytest

from harbourmaster.services.platform import Platform

from .helpers import two_admins

HUGE = 10**20


@pytest.mark.xfail(strict=True, reason="path integers are bounded by the bounded-input branch (issue 7, item 7)")
def test_an_out_of_range_id_is_a_4xx(platform: Platform) -> None:
    with two_admins(platform) as outside, outside.http("a2") as a2:
        for method, path in (
            ("POST", f"/duty-requests/{HUGE}/confirm"),
            ("POST", f"/duty-requests/{HUGE}/reject"),
            ("DELETE", f"/tokens/{HUGE}"),
        ):
            answer = a2.request(method, path)
            assert 400 <= answer.status_code < 500, (path, answer.text)
