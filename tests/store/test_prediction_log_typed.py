"""The prediction log in typed columns: exact values, old JSON-text files read alongside, compaction that keeps
exactly the rows (even when killed midway), retention by day."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harbourmaster.core.log_layout import LogLayout
from harbourmaster.serving.capture import Captured, CaptureWriter, encode
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.prediction_log import (
    LAYOUT_METADATA,
    PredictionLog,
    compact,
    expire,
    key_version,
    prediction_key,
    table_bytes,
    write_predictions,
)

INPUT_SCHEMA = {
    "columns": [
        {"name": "amount", "dtype": "float"},
        {"name": "count", "dtype": "integer"},
        {"name": "member", "dtype": "boolean"},
        {"name": "city", "dtype": "string"},
        {"name": "since", "dtype": "datetime"},
        {"name": "plan", "dtype": "category", "categories": ["a", "b"]},
        {"name": "code", "dtype": "category", "categories": [1, "x"]},  # mixed: kept as JSON text
        {"name": "note", "dtype": "string", "required": False},
    ]
}
OUTPUT_SCHEMA = {"task": "classification", "dtype": "integer", "classes": [0, 1], "has_probabilities": True}
LAYOUT = LogLayout.from_schemas(3, INPUT_SCHEMA, OUTPUT_SCHEMA)
RECORDS = [
    {"amount": 12.5, "count": 3, "member": True, "city": "Oslo", "since": "2026-01-02", "plan": "a", "code": 1},
    {"amount": 7, "count": -2, "member": False, "city": "Åre ☃", "since": "2026-01-03T04:05:06Z", "plan": "b",
     "code": "x", "note": "hi"},
    {"amount": 0.1, "count": 2**40, "member": True, "city": "", "since": "2026-02-01", "plan": "b", "code": None},
]  # fmt: skip
PREDICTIONS = [1, 0, 1]
PROBABILITIES = [{"0": 0.25, "1": 0.75}, {"0": 0.875, "1": 0.125}, {"0": 0.5, "1": 0.5}]


def captured(request_id: str, ts: datetime, records: list[dict], version: int | None = 3, **kw: object) -> Captured:
    n = len(records)
    fields: dict[str, object] = {
        "ts_us": int(ts.timestamp() * 1_000_000),
        "request_id": request_id,
        "project": "p",
        "version": version,
        "path": "champion",
        "reason": None,
        "status": 200,
        "latency_ms": 1.5,
        "records": records,
        "predictions": [PREDICTIONS[i % 3] for i in range(n)],
        "probabilities": [PROBABILITIES[i % 3] for i in range(n)],
    }
    fields.update(kw)
    return Captured(**fields)  # type: ignore[arg-type]


def put(store: ArtifactStore, entries: list[Captured], name: str, layouts: dict | None = None) -> list[str]:
    """Write entries as the capture writer does (one file per day and version), named after ``name``."""
    keys = []
    for (project, day, version), table in encode(entries, "dev", "r1", layouts or {("p", 3): LAYOUT}).items():
        key = prediction_key("dev", project, day, name, version)
        store.put_bytes(key, table_bytes(table))
        keys.append(key)
    return keys


def all_rows(log: PredictionLog) -> list[tuple]:
    frame = log.query(
        "SELECT request_id, row, ts, version, path, inputs, output, probabilities FROM predictions "
        "ORDER BY request_id, row, ts"
    )
    return [tuple(None if pd.isna(value) else value for value in row) for row in frame.itertuples(index=False)]


def test_the_writer_logs_typed_columns_with_exact_values(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'artifacts'}")
    writer = CaptureWriter(
        store, ServingMetrics("dev"), spool_dir=tmp_path / "spool", environment="dev", replica="r1", flush_seconds=0.1
    )
    writer.describe("p", 3, LAYOUT)
    now = datetime.now(UTC)
    writer.submit(captured("many", now, RECORDS))
    writer.submit(captured("extra", now, [{**RECORDS[0], "colour": "red"}]))  # a field the layout lacks
    writer.submit(captured("refused", now, [], version=None, path="refused", reason="bad", status=422,
                           predictions=None, probabilities=None))  # fmt: skip
    writer.submit(captured("unknown", now, [{"z": 1}], version=9))  # no layout for v9: JSON text
    writer.close()

    keys = store.list("predictions/")
    assert sorted(key_version(key) for key in keys) == [0, 3, 9]
    typed = next(key for key in keys if key_version(key) == 3)
    schema = pq.read_schema(store.path(typed))
    assert json.loads(schema.metadata[LAYOUT_METADATA])["version"] == 3
    assert {"in_amount", "in_count", "in_member", "in_city", "in_since", "in_plan", "in_code", "in_note"} <= set(
        schema.names
    )
    assert str(schema.field("in_count").type) == "int64" and str(schema.field("in_member").type) == "bool"

    log = PredictionLog(store)
    frame = log.query("SELECT * FROM predictions WHERE request_id = 'many' ORDER BY row")
    assert frame["in_amount"].tolist() == [12.5, 7.0, 0.1]
    assert frame["in_count"].tolist() == [3, -2, 2**40]
    assert frame["in_member"].tolist() == [True, False, True]
    assert frame["in_city"].tolist() == ["Oslo", "Åre ☃", ""]
    assert frame["in_since"].tolist() == ["2026-01-02", "2026-01-03T04:05:06Z", "2026-02-01"]
    assert frame["in_code"].tolist()[:2] == ["1", '"x"']  # mixed category: its JSON text
    assert frame["in_note"].isna().tolist() == [True, False, True]
    assert frame["out_prediction"].tolist() == PREDICTIONS
    assert frame["out_proba_1"].tolist() == [0.75, 0.125, 0.5]
    # the JSON view reads the same values back, for old readers and ad-hoc SQL
    assert [json.loads(text) for text in frame["inputs"]] == [
        {**record, "note": record.get("note")} for record in RECORDS
    ]
    assert [json.loads(text) for text in frame["probabilities"]] == PROBABILITIES
    assert frame["output"].tolist() == ["1", "0", "1"]

    extra = log.query("SELECT inputs, in_amount FROM predictions WHERE request_id = 'extra'")
    assert json.loads(extra["inputs"][0])["colour"] == "red" and extra["in_amount"][0] == 12.5
    refused = log.query("SELECT inputs, status, version FROM predictions WHERE request_id = 'refused'")
    assert refused["inputs"].isna().all() and refused["status"][0] == 422
    unknown = log.query("SELECT inputs, output FROM predictions WHERE request_id = 'unknown'")
    assert json.loads(unknown["inputs"][0]) == {"z": 1} and unknown["output"][0] == "1"

    window = log.window(
        "dev",
        "p",
        version=3,
        columns={"amount": "DOUBLE", "count": "DOUBLE", "plan": "VARCHAR", "since": "TIMESTAMP", "code": "VARCHAR"},
        output="VARCHAR",
    ).sort_values(["ts", "amount"])
    assert len(window) == 4  # three typed rows and the one kept as JSON (its extra field)
    assert sorted(window["amount"].tolist()) == [0.1, 7.0, 12.5, 12.5]
    assert sorted(window["code"].dropna().tolist()) == ["1", "1", "x"]
    assert window["since"].min() == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    assert sorted(window["__prediction__"].tolist()) == ["0", "1", "1", "1"]


def test_a_log_with_json_text_files_and_typed_files_reads_as_one(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    now = datetime.now(UTC) - timedelta(minutes=1)
    old = [
        {"request_id": f"old-{i}", "row": 0, "ts": now - timedelta(seconds=i), "environment": "dev", "project": "p",
         "version": 3, "path": "champion", "reason": None, "status": 200, "latency_ms": 1.0,
         "inputs": json.dumps({"amount": float(i), "plan": "a"}), "output": "1", "probabilities": None,
         "shadow_version": None, "shadow_output": None, "replica": "r0"}
        for i in range(5)
    ]  # fmt: skip
    write_predictions(store, old)
    put(store, [captured(f"new-{i}", now + timedelta(seconds=i), [RECORDS[i % 3]]) for i in range(6)], "a" * 16)
    log = PredictionLog(store)
    assert log.count("dev", "p") == 11
    window = log.window("dev", "p", version=3, columns={"amount": "DOUBLE", "plan": "VARCHAR"}, output="DOUBLE")
    assert sorted(window["amount"].tolist()) == sorted([0.0, 1.0, 2.0, 3.0, 4.0] + [12.5, 7.0, 0.1] * 2)
    assert window["__prediction__"].notna().all()
    newest = log.window("dev", "p", version=3, columns={"amount": "DOUBLE"}, last_rows=3)
    assert len(newest) == 3 and newest["ts"].min() >= now
    assert log.window("dev", "p", version=4, columns={"amount": "DOUBLE"}).empty
    recent = log.recent("dev", "p", limit=20)
    assert len(recent) == 11 and recent["inputs"].notna().all()


def hourly_log(store: ArtifactStore, base: datetime) -> list[str]:
    """Small files over two closed hours and the current one: two versions, a JSON-text file, a refusal."""
    keys = []
    for i in range(12):
        ts = base + timedelta(minutes=10 * i)  # 10:00 .. 11:50
        entries = [captured(f"r{i}-{j}", ts + timedelta(seconds=j), RECORDS[: 1 + j % 3]) for j in range(3)]
        entries.append(captured(f"x{i}", ts, [], version=None, path="refused", status=401, predictions=None))
        keys += put(store, entries, f"{i:016x}", {("p", 3): LAYOUT})
    write_predictions(store, [
        {"request_id": "legacy", "row": 0, "ts": base + timedelta(minutes=5), "environment": "dev", "project": "p",
         "version": 2, "path": "champion", "reason": None, "status": 200, "latency_ms": 1.0,
         "inputs": '{"amount": 1.0}', "output": "0", "probabilities": None, "shadow_version": None,
         "shadow_output": None, "replica": "r0"}
    ])  # fmt: skip
    return keys


def test_compaction_keeps_exactly_the_rows_and_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    base = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    keys = hourly_log(store, base)
    log = PredictionLog(store)
    before = all_rows(log)
    files_before = len(log.files("predictions"))

    # 11:00-12:00 is still open (12:05 < 12:00 + 10 minutes of grace): only 10:00-11:00 is merged
    report = compact(store, now=base + timedelta(hours=2, minutes=5))
    assert report.groups == 2 and report.duplicates == 0  # v3 and v0 files of 10:00 (the lone JSON file stays)
    assert all_rows(log) == before
    report = compact(store, now=base + timedelta(hours=3))
    assert report.groups == 2
    assert all_rows(log) == before
    files = log.files("predictions")
    assert len(files) == 5 < files_before  # per hour: v3 and v0; and the JSON-text file
    assert not [key for key in store.list("predictions/") if not key.endswith(".parquet")]  # no journal left
    typed = [key for key in files if key_version(key) == 3]
    assert json.loads(pq.read_schema(store.path(typed[0])).metadata[LAYOUT_METADATA])["version"] == 3
    assert compact(store, now=base + timedelta(hours=3)).groups == 0  # nothing left to do

    # A spool segment uploaded again after a crash (its file had been merged): merged once, not twice
    store.put_bytes(keys[0], table_bytes(next(iter(encode(
        [captured(f"r0-{j}", base + timedelta(seconds=j), RECORDS[: 1 + j % 3]) for j in range(3)],
        "dev", "r1", {("p", 3): LAYOUT}).values()))))  # fmt: skip
    assert len(all_rows(log)) == len(before) + 6  # seen twice until the next pass
    report = compact(store, now=base + timedelta(hours=3))
    assert report.groups == 1 and report.duplicates == 6
    assert all_rows(log) == before


KILLED_COMPACTION = """
import os, signal, sys
from datetime import datetime, timedelta, UTC
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store import prediction_log

class Dying(ArtifactStore):
    def put_bytes(self, key, data):
        if sys.argv[2] == "before-output" and "/c" in key and key.endswith(".parquet"):
            os.kill(os.getpid(), signal.SIGKILL)
        super().put_bytes(key, data)

    def delete(self, key):
        super().delete(key)
        if sys.argv[2] == "mid-delete" and key.endswith(".parquet"):
            os.kill(os.getpid(), signal.SIGKILL)

prediction_log.compact(Dying(sys.argv[1]), now=datetime(2026, 3, 1, 13, tzinfo=UTC))
"""


@pytest.mark.parametrize("crash", ["before-output", "mid-delete"])
def test_a_compaction_killed_midway_loses_and_duplicates_nothing(tmp_path: Path, crash: str) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    hourly_log(store, datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    log = PredictionLog(store)
    before = all_rows(log)
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_COMPACTION), f"file://{tmp_path}", crash],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    journals = [key for key in store.list("predictions/") if key.endswith(".json")]
    assert len(journals) == 1  # the interrupted group's
    assert all_rows(log) == before  # readers see every row once while the journal is there
    report = compact(store, now=datetime(2026, 3, 1, 13, tzinfo=UTC))
    assert report.recovered == 1
    assert all_rows(log) == before
    assert not [key for key in store.list("predictions/") if key.endswith(".json")]
    assert compact(store, now=datetime(2026, 3, 1, 13, tzinfo=UTC)).groups == 0


def test_retention_removes_whole_days_older_than_the_setting(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    for days in (0, 2, 3, 9):
        put(store, [captured(f"d{days}", now - timedelta(days=days), RECORDS)], f"{days:016x}")
    report = expire(store, "dev", "p", 3, now)
    # 2026-03-07 ends after the cut (12:00 three days ago): a row is kept at least the days set
    assert report.days == ["2026-03-01"] and report.files == 1 and report.rows == 3
    remaining = PredictionLog(store).query("SELECT DISTINCT request_id FROM predictions ORDER BY 1")
    assert remaining["request_id"].tolist() == ["d0", "d2", "d3"]
    assert expire(store, "dev", "p", 3, now).files == 0
