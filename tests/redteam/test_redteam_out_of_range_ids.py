"""Attack: an id past the database's integer range on the routes of separation of duties and tokens.

Found by the red-team pass: ``POST /duty-requests/99999999999999999999/confirm`` and
``DELETE /tokens/99999999999999999999`` answered 500 (OverflowError) with no audit entry.
Path integers are now bounded (a 4xx naming the limit, audited).
"""

from __future__ import annotations

from harbourmaster.services.platform import Platform

from .helpers import two_admins

HUGE = 10**20


def test_an_out_of_range_id_is_a_4xx(platform: Platform) -> None:
    with two_admins(platform) as outside, outside.http("a2") as a2:
        for method, path in (
            ("POST", f"/duty-requests/{HUGE}/confirm"),
            ("POST", f"/duty-requests/{HUGE}/reject"),
            ("DELETE", f"/tokens/{HUGE}"),
        ):
            answer = a2.request(method, path)
            assert 400 <= answer.status_code < 500, (path, answer.text)
