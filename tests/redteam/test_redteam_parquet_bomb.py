"""Attack: a replica credential (or a malicious model in a dev replica) uploads a Parquet "bomb".

Found by the red-team pass: a 4 kB prediction file whose rows repeat one long value through the
Parquet dictionary decoded to 200 MB on the control plane, and the upload limit (64 MB of Parquet)
allowed files that decode to terabytes: one request could exhaust the control plane's memory.
Sizes are now checked before the rows are expanded.
"""

from __future__ import annotations

import io
import uuid

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harbourmaster.api.app import create_app
from harbourmaster.services import dataplane
from harbourmaster.services.platform import Platform
from harbourmaster.store.prediction_log import PREDICTION_SCHEMA
from loopback import serve_in_thread

from .helpers import SYSTEM


def _bomb(rows: int, value_bytes: int, *, dictionary: bool = True) -> bytes:
    """Prediction rows of dev whose ``inputs`` repeat one long value."""
    value = "x" * value_bytes
    columns = {
        field.name: {"environment": ["dev"] * rows, "project": ["p"] * rows, "inputs": [value] * rows}.get(
            field.name, [None] * rows
        )
        for field in PREDICTION_SCHEMA
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=PREDICTION_SCHEMA), buffer, compression="zstd", use_dictionary=dictionary)
    return buffer.getvalue()


def _key() -> str:
    return f"predictions/env=dev/project=p/date=2026-12-01/{uuid.uuid4().hex}.parquet"


def test_a_prediction_file_that_decodes_to_gigabytes_is_refused_before_it_is_decoded(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit scaled down (8 MB) so the bombs stay small on a shared machine: the ratio is what matters.
    monkeypatch.setattr(dataplane, "MAX_PREDICTION_DECODED_BYTES", 8 * 1024 * 1024, raising=False)
    issued = platform.dataplane.create_credential(SYSTEM, "dev", "bomber")
    dictionary_bomb = _bomb(50, 1_000_000)  # 50 MB decoded: one value repeated through the dictionary
    page_bomb = _bomb(1, 20_000_000, dictionary=False)  # 20 MB decoded: one page that compresses a thousandfold
    assert len(dictionary_bomb) < 50_000 and len(page_bomb) < 50_000
    headers = {"Authorization": f"Bearer {issued.secret}"}
    with serve_in_thread(create_app(platform)) as url, httpx.Client(base_url=url, headers=headers, timeout=120) as dev:
        for bomb in (dictionary_bomb, page_bomb):
            answer = dev.post("/api/v1/dataplane/dev/predictions", params={"key": _key()}, content=bomb)
            assert answer.status_code == 422, answer.text
            assert "decodes to" in answer.json()["error"]["message"]
        # An honest file (same shape, short values) is still stored.
        honest = dev.post("/api/v1/dataplane/dev/predictions", params={"key": _key()}, content=_bomb(300, 20))
        assert honest.status_code == 201, honest.text
    assert len(platform.artifacts.list("predictions/env=dev/")) == 1
