"""Capture is at least once: the write-ahead spool survives a killed writer, a failing store and a full disk."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import make_settings
from tests.serving.projects import MOODY, train_moody

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.capture import Captured, CaptureWriter, now_us
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.prediction_log import PredictionLog

ACTOR = Actor.local_owner()


def entry(request_id: str, project: str = "p", rows: int = 1) -> Captured:
    records = [{"x": float(i)} for i in range(rows)]
    return Captured(now_us(), request_id, project, 1, "champion", None, 200, 1.0, records, [0] * rows, None)


def metric(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def logged_keys(store: ArtifactStore) -> list[tuple[str, int]]:
    frame = PredictionLog(store).query("SELECT request_id, row FROM predictions ORDER BY request_id, row")
    return list(zip(frame["request_id"], frame["row"].astype(int), strict=True))


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from harbourmaster.serving.capture import Captured, CaptureWriter, now_us
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.artifacts import ArtifactStore

store = ArtifactStore(sys.argv[1])

def sink(key, data):  # uploads one partition of the first segment, then the process dies
    store.put_bytes(key, data)
    os.kill(os.getpid(), signal.SIGKILL)

writer = CaptureWriter(None, ServingMetrics("dev"), spool_dir=Path(sys.argv[2]), sink=sink,
                       environment="dev", replica="killed", flush_seconds=3600)
for i in range(50):
    project = "a" if i % 2 else "b"
    rows = [{"x": float(i)}, {"x": 1.0}]
    writer.submit(Captured(now_us(), f"k-{i:03d}", project, 1, "champion", None, 200, 1.0, rows, [0, 1], None))
writer._stop.set()  # the writer's final flush starts; the sink kills the process during it
writer._thread.join(60)
"""


def test_a_killed_writers_spool_is_adopted_and_uploaded_once(tmp_path: Path) -> None:
    store_url, spool = tmp_path / "artifacts", tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(store_url), str(spool)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    store = ArtifactStore(str(store_url))
    assert 0 < len(logged_keys(store)) < 100  # one of the two partitions made it before the kill
    assert list(spool.glob("*.seg")), "the killed writer's segment stays on disk"

    metrics = ServingMetrics("dev")
    writer = CaptureWriter(store, metrics, spool_dir=spool, environment="dev", replica="next", flush_seconds=0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and writer.pending:
        time.sleep(0.05)
    writer.close()
    keys = logged_keys(store)
    assert len(keys) == len(set(keys)) == 100  # every row of the 50 requests, none twice
    assert {rid for rid, _ in keys} == {f"k-{i:03d}" for i in range(50)}
    replicas = PredictionLog(store).query("SELECT DISTINCT replica FROM predictions")
    assert list(replicas["replica"]) == ["killed"]  # rows keep the replica that answered them
    assert not list(spool.glob("*.seg")) and not list(spool.glob("*.lock"))


def test_a_full_spool_drops_counts_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServingMetrics("dev")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    writer = CaptureWriter(store, metrics, spool_dir=tmp_path / "spool", spool_bytes=4_000, flush_seconds=3600)
    with caplog.at_level(logging.ERROR, logger="harbourmaster.serving.capture"):
        for i in range(100):
            writer.submit(entry(f"f-{i}"))
    assert 0 < writer.dropped < 100
    text = metrics.render().decode()
    assert metric(text, "harbourmaster_capture_spool_full_total") == writer.dropped
    assert metric(text, "harbourmaster_capture_dropped_total") == writer.dropped
    assert "spool" in caplog.text and "full" in caplog.text
    writer.close()
    assert len(logged_keys(store)) == 100 - writer.dropped


def break_store(root: Path) -> None:
    """A real failure: the prediction log's folder is replaced by a file, so every write under it fails."""
    predictions = root / "predictions"
    if predictions.exists():
        predictions.rename(root / "predictions.away")
    predictions.write_text("not a folder")


def repair_store(root: Path) -> None:
    (root / "predictions").unlink()
    if (root / "predictions.away").exists():
        (root / "predictions.away").rename(root / "predictions")


@pytest.mark.slow
def test_a_store_outage_spills_to_the_spool_and_recovery_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    platform = Platform(make_settings(tmp_path / "home"))
    moody = train_moody(platform, tmp_path)
    platform.deployments.deploy(ACTOR, MOODY, moody["good"], "dev")
    root = Path(platform.artifacts.path(""))
    options = ReplicaOptions(poll_seconds=0.1, capture_flush_seconds=0.2)
    answered: list[str] = []
    with ServerThread(platform, "dev", options) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and MOODY not in server.replica.table.routes:
            time.sleep(0.05)

        def send(count: int, prefix: str) -> None:
            for i in range(count):
                rid = f"{prefix}-{i}"
                answer = client.post(
                    f"/v1/projects/{MOODY}/predict", json={"x1": 1.0 + i % 7, "x2": 2.0}, headers={"X-Request-ID": rid}
                )
                assert answer.status_code == 200, answer.text
                answered.append(rid)

        send(20, "before")
        break_store(root)
        try:
            send(300, "outage")
            deadline = time.monotonic() + 30
            status = client.get("/v1/status").json()["capture"]
            while time.monotonic() < deadline and status["spilled"] < 300:
                time.sleep(0.1)
                status = client.get("/v1/status").json()["capture"]
            assert status["spilled"] >= 300 and status["pending"] >= status["spilled"], status
            text = client.get("/metrics").text
            assert metric(text, "harbourmaster_capture_spilled_rows") >= 300
            assert metric(text, "harbourmaster_capture_pending_rows") >= 300
            assert metric(text, "harbourmaster_capture_write_errors_total") >= 1
            assert list(server.replica.capture.spool_folder.glob("*.seg"))
        finally:
            repair_store(root)
        send(30, "after")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and client.get("/v1/status").json()["capture"]["pending"]:
            time.sleep(0.2)
        assert client.get("/v1/status").json()["capture"] == {
            "queue": 0,
            "pending": 0,
            "spilled": 0,
            "dropped": 0,
            "written": len(answered),
        }
    logged = PredictionLog(platform.artifacts).query("SELECT request_id FROM predictions", "dev", MOODY)
    assert sorted(logged["request_id"]) == sorted(answered)  # none lost, none twice
    assert not list((platform.settings.cache_dir / "spool" / "dev").glob("*.seg"))
    platform.close()


def test_a_bad_spooled_line_is_skipped_without_holding_back_the_rest(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", ArtifactStore(str(tmp_path / "artifacts"))
    spool.mkdir()
    (spool / "deadbeef00000000.lock").touch()  # an owner that is gone: nobody holds its lock
    good = [list(entry(f"g-{i}")) for i in range(3)]
    wrong_shape = ["not", "a", "request"]
    wrong_types = list(entry("bad"))
    wrong_types[8] = "records should be a list"
    lines = [{"environment": "dev", "replica": "gone"}, good[0], wrong_shape, good[1], wrong_types, good[2]]
    (spool / "deadbeef00000000-000000001.seg").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))

    writer = CaptureWriter(store, ServingMetrics("dev"), spool_dir=spool, environment="dev", flush_seconds=0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(spool.glob("*.seg")):
        time.sleep(0.05)
    writer.close()
    assert [rid for rid, _ in logged_keys(store)] == ["g-0", "g-1", "g-2"]
    assert not list(spool.glob("*.seg")) and not list(spool.glob("*.lock"))


DIES_WHILE_MAPPED = """
import os, signal, sys
from pathlib import Path
from harbourmaster.serving.capture import Captured, now_us
from harbourmaster.serving.spool import Spool
import orjson

spool = Spool(Path(sys.argv[1]), {"environment": "dev", "replica": "mapped"})
for i in range(40):
    entry = Captured(now_us(), f"m-{i:03d}", "p", 1, "champion", None, 200, 1.0, [{"x": float(i)}], [0], None)
    spool.append(orjson.dumps(tuple(entry)) + b"\\n", 1)
spool.append(b'[1, "torn', 1)  # a line cut short by the death of the process, as a crash mid-copy leaves it
os.kill(os.getpid(), signal.SIGKILL)  # no seal, no unmap, no sync: the page cache holds the lines
"""


def test_a_segment_whose_writer_died_while_mapped_is_adopted_without_its_zero_tail(tmp_path: Path) -> None:
    store, spool = ArtifactStore(str(tmp_path / "artifacts")), tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DIES_WHILE_MAPPED), str(spool)], capture_output=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    [segment] = spool.glob("*.seg")
    assert segment.stat().st_size >= 1 << 20 and segment.read_bytes().endswith(b"\0")  # preallocated, mapped
    writer = CaptureWriter(store, ServingMetrics("dev"), spool_dir=spool, environment="dev", flush_seconds=0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(spool.glob("*.seg")):
        time.sleep(0.05)
    writer.close()
    assert [rid for rid, _ in logged_keys(store)] == [f"m-{i:03d}" for i in range(40)]  # the torn line skipped
    assert not list(spool.glob("*.seg")) and not list(spool.glob("*.spare"))


FILE_SIZE_LIMIT = """
import resource, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
from harbourmaster.serving.capture import Captured, CaptureWriter, now_us
from harbourmaster.serving.metrics import ServingMetrics
uploaded = []
writer = CaptureWriter(None, ServingMetrics("dev"), spool_dir=Path(sys.argv[1]), sink=lambda k, d: uploaded.append(k),
                       environment="dev", replica="r", flush_seconds=3600)
for i in range(400):  # about 100 KB of lines: more than one segment may hold
    records = [{"x": float(i), "pad": "p" * 150}]
    writer.submit(Captured(now_us(), f"f-{i:03d}", "p", 1, "champion", None, 200, 1.0, records, [0], None))
print(writer.accepted, writer.dropped, flush=True)
writer.close()
print(len(uploaded), writer.written, flush=True)
"""


def test_a_spool_that_cannot_grow_drops_and_counts_lines_instead_of_crashing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FILE_SIZE_LIMIT), str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # no SIGBUS: blocks are reserved before a mapping grows
    (accepted, dropped), (uploads, written) = (map(int, line.split()) for line in done.stdout.split("\n")[:2])
    assert accepted + dropped == 400 and 0 < accepted < 400 and dropped > 0
    assert uploads == 1 and written == accepted  # what the spool took is logged, the rest counted as dropped
