"""Hostile and honest inputs on the data plane's routes, against a live control plane.

- A NUL byte in a replica id, an environment or a project name answered 500 (DataError) on
  PostgreSQL, and the refusal of a foreign environment could not even be audited; the control plane's
  bounded-input middleware now refuses NUL bytes anywhere (4xx, audited).
- A replica's heartbeat carries its traffic counters (the SLA monitor's samples): a hostile block is
  bounded (1000 projects), malformed entries are left out, and the heartbeat itself still lands.
- An honest prediction file larger than a JSON call (CaptureWriter batches up to 5,000 rows) must
  still be accepted: a guard against a request-size limit that forgets the data plane's upload route.
"""

from __future__ import annotations

import io
import os
import uuid

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from harbourmaster.api.app import create_app
from harbourmaster.core.sla import LATENCY_BUCKETS
from harbourmaster.services.platform import Platform
from harbourmaster.services.replicas import MAX_PROJECTS_PER_BEAT
from harbourmaster.store.prediction_log import PREDICTION_SCHEMA
from harbourmaster.store.tables import TrafficSampleRow
from loopback import serve_in_thread

from .helpers import SYSTEM


def _replica(platform: Platform, url: str) -> httpx.Client:
    issued = platform.dataplane.create_credential(SYSTEM, "dev", "hostile")
    return httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {issued.secret}"}, timeout=120)


def test_a_nul_byte_on_the_data_plane_is_a_4xx(platform: Platform) -> None:
    with serve_in_thread(create_app(platform)) as url, _replica(platform, url) as dev:
        answers = [
            dev.post("/dataplane/dev/heartbeats", json={"replica": "r\u0000", "host": "h", "pid": 1}),
            dev.post("/dataplane/dev/runs", json={"project": "p\u0000", "version": 1, "status": "failed"}),
            dev.post("/dataplane/dev/feedback/p%00", json={"feedback": [{"request_id": "x", "value": 1}]}),
            dev.get("/dataplane/d%00ev/state"),
        ]
        assert [answer.status_code for answer in answers if answer.status_code >= 500] == [], [
            answer.text for answer in answers
        ]


def test_an_honest_prediction_file_of_a_few_megabytes_is_stored(platform: Platform) -> None:
    rows = 5_000
    columns = {field.name: [None] * rows for field in PREDICTION_SCHEMA}
    columns.update(environment=["dev"] * rows, project=["p"] * rows)
    columns["inputs"] = [os.urandom(200).hex() for _ in range(rows)]  # incompressible: about 2 MB of Parquet
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=PREDICTION_SCHEMA), buffer)
    assert len(buffer.getvalue()) > 1_500_000
    key = f"predictions/env=dev/project=p/date=2026-12-01/{uuid.uuid4().hex}.parquet"
    with serve_in_thread(create_app(platform)) as url, _replica(platform, url) as dev:
        stored = dev.post("/dataplane/dev/predictions", params={"key": key}, content=buffer.getvalue())
        assert stored.status_code == 201, stored.text
    assert platform.artifacts.exists(key)


def test_typed_prediction_files_are_stored_and_foreign_ones_refused(platform: Platform) -> None:
    from datetime import UTC, datetime

    from harbourmaster.core.log_layout import LogLayout
    from harbourmaster.serving.capture import Captured, encode
    from harbourmaster.store.prediction_log import table_bytes

    layout = LogLayout.from_schemas(1, {"columns": [{"name": "x", "dtype": "float"}]}, {"task": "regression"})
    ts = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1_000_000)
    entry = Captured(ts, "r1", "p", 1, "champion", None, 200, 1.0, [{"x": 0.5}], [1.5], None)
    table = next(iter(encode([entry], "dev", "r", {("p", 1): layout}).values()))
    name = uuid.uuid4().hex
    key = f"predictions/env=dev/project=p/date=2026-12-01/{name}"
    evil = table.append_column("evil", pa.array(["x"]))
    with serve_in_thread(create_app(platform)) as url, _replica(platform, url) as dev:

        def upload(suffix: str, data: bytes) -> httpx.Response:
            return dev.post("/dataplane/dev/predictions", params={"key": key + suffix}, content=data)

        assert upload(".v1.parquet", table_bytes(table)).status_code == 201
        other = upload(".v2.parquet", table_bytes(table))
        assert other.status_code == 422 and "versions" in other.json()["error"]["message"], other.text
        foreign = upload(".v1.parquet", table_bytes(evil))
        assert foreign.status_code == 422 and "evil" in foreign.json()["error"]["message"], foreign.text
        unnamed = upload(".parquet", table_bytes(table))
        assert unnamed.status_code == 422 and "typed columns" in unnamed.json()["error"]["message"], unnamed.text
    assert platform.artifacts.exists(key + ".v1.parquet")


def test_a_hostile_traffic_block_in_a_heartbeat_is_bounded_and_never_a_5xx(platform: Platform) -> None:
    good = {"requests": 1, "errors": 0, "fallbacks": 0, "timed": 1, "latency_sum": 0.1, "buckets": [1] * 13}
    projects = {"deep": {"buckets": [[[]]]}, "big": {**good, "requests": 1e308}, "Not A Name": good}
    projects.update({f"p{i}": good for i in range(MAX_PROJECTS_PER_BEAT + 500)})
    traffic = {"uptime": 5, "bounds": list(LATENCY_BUCKETS), "projects": projects}
    beats = [
        {"traffic": traffic},
        {"traffic": {**traffic, "uptime": 1e300}},  # would overflow a datetime: not believed
        {"traffic": {"uptime": "soon", "bounds": "none", "projects": []}},
        {"traffic": [1, 2, 3]},
    ]
    with serve_in_thread(create_app(platform)) as url, _replica(platform, url) as dev:
        for index, details in enumerate(beats):
            beat = {"replica": f"hostile-{index}", "host": "h", "pid": 1, "status": "stopped", "details": details}
            answer = dev.post("/dataplane/dev/heartbeats", json=beat)
            assert answer.status_code < 300, answer.text
    with platform.db.reader() as session:
        stored = session.scalars(select(TrafficSampleRow.project)).all()
    # Only the first 1000 entries are read; of those, the malformed one and the bad name are left out.
    assert len(stored) == MAX_PROJECTS_PER_BEAT - 2 and "big" in stored
    assert not {"deep", "Not A Name"} & set(stored)
