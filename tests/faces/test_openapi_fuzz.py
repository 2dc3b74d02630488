"""Schemathesis (its Python API) drives every operation of the control plane's OpenAPI with generated requests, as an
admin with a valid token, against a real server on loopback: no answer may be a 5xx (issue 7).

Bounded: a few examples per operation and generation mode (about 50 s of CPU; longer on a loaded machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from tests.conftest import make_settings

from harbourmaster.api.app import create_app
from harbourmaster.errors import AuthenticationError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from loopback import serve_in_thread

MAX_EXAMPLES = 4
SYSTEM = Actor.system("fuzz")


class Target:
    """The live server, and an admin token renewed if a generated request revoked it."""

    def __init__(self, platform: Platform, url: str) -> None:
        self.platform = platform
        self.url = url
        self.token = ""
        self.renew()

    def renew(self) -> None:
        self.token = self.platform.identity.create_token(SYSTEM, "fuzz-admin", "fuzz").secret

    def headers(self) -> dict[str, str]:
        try:
            self.platform.identity.authenticate(self.token)
        except AuthenticationError:
            self.renew()
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    platform = Platform(make_settings(Path(tmp_path_factory.mktemp("fuzz")) / "home"))
    platform.identity.create_user(SYSTEM, "fuzz-admin", ["admin"])
    with serve_in_thread(create_app(platform)) as url:
        yield Target(platform, url)
    platform.close()


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(target: Target) -> None:
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    failures: list[str] = []
    calls = {GenerationMode.POSITIVE: 0, GenerationMode.NEGATIVE: 0}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
            )
            def run(case: Any) -> None:
                response = case.call(base_url=target.url, headers=target.headers(), timeout=30)
                if response.status_code >= 500:
                    failures.append(f"{response.status_code}: {response.text[:300]}\n  {case.as_curl_command()}")

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to negate (an operation without parameters or body)
            calls[mode] += 1
    assert not failures, "\n".join(failures[:20])
    assert calls[GenerationMode.POSITIVE] == len(operations) and calls[GenerationMode.NEGATIVE] > 20
