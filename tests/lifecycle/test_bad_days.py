"""The lifecycle loop's bad days, on real parts: a lifecycle worker SIGKILLed while it holds a case (its
lease expires, one other worker reclaims the case, audited, and resumes it without running a finished step
again); a worker that died after registering the retrained version (the next records that version instead of
training another; a write under the dead claim is refused); a full disk while retraining registers its version
and while an evaluation writes its report (nothing half-written kept, the command says the disk is full and
what to do, the audit chain verifies); ``cases show`` prints every link whole."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from tests.conftest import make_settings

from cli_inprocess import invoke
from governance.helpers import actor, create_users, live_server
from harbourmaster.client import Client
from harbourmaster.errors import ConflictError, StorageFullError, storage_full
from harbourmaster.lifecycle_worker import run_case, work
from harbourmaster.services.cases import CaseInfo
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow

from .projects import PROJECT, SYSTEM, TOML, frame, log_traffic, write_project
from .test_automation import AUTOMATION, _configure, _drift_alert, _drifting_prod

# No replica serves test here: the resumed case ends at the load test at once (what is tested is the claim).
POLICY = AUTOMATION.replace("serve_wait_seconds = 60", "serve_wait_seconds = 0")


def _open_case(platform: Platform, tmp_path: Path) -> tuple[dict[str, str], CaseInfo]:
    tokens = create_users(platform)
    _configure(platform, "test", allow_skip=True)
    _drifting_prod(platform, write_project(tmp_path / "shifty", TOML + POLICY))
    _drift_alert(platform)
    (case,) = platform.cases.list(SYSTEM)
    return tokens, case


def _audited(platform: Platform, action: str) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(AuditEventRow).where(AuditEventRow.action == action)))


def _wait_until_expired(platform: Platform, case_id: int, bound: float = 30) -> None:
    deadline = time.monotonic() + bound
    while True:
        expires = platform.cases.get(SYSTEM, case_id).lease_expires_at
        assert expires is not None and time.monotonic() < deadline, expires
        if expires < datetime.now(UTC):
            return
        time.sleep(0.1)


def _race(url: str, token: str, lease: float = 60) -> list[list[CaseInfo]]:
    """Two workers claim at the same instant (one pass each); what each ran."""
    ran: list[list[CaseInfo]] = []
    barrier = threading.Barrier(2)

    def one_worker(name: str) -> None:
        with Client(url=url, token=token) as hm:
            barrier.wait(30)
            ran.append(work(hm, once=True, worker=name, lease=lease))

    workers = [threading.Thread(target=one_worker, args=(f"w{i}",)) for i in (1, 2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(180)
    return ran


@pytest.mark.slow
def test_a_killed_worker_s_case_is_reclaimed_once_and_resumed_after_its_finished_steps(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("HARBOURMASTER_HOME", str(tmp_path / "cli-home"))
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    platform = Platform(make_settings(tmp_path / "home", url))
    worker = None
    try:
        tokens, case = _open_case(platform, tmp_path)
        with live_server(platform) as live:
            env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
            env.update(HARBOURMASTER_HOME=str(tmp_path / "worker-home"), HARBOURMASTER_TOKEN=tokens["olga"])
            command = [sys.executable, "-m", "harbourmaster", "lifecycle", "worker", "--url", live.url]
            worker = subprocess.Popen(
                [*command, "--name", "doomed", "--lease", "2", "--poll", "0.5"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            # SIGKILL it once the retrain step is recorded, while it runs the next one.
            deadline = time.monotonic() + 180
            while not any(s["step"] == "retrain" for s in platform.cases.get(SYSTEM, case.id).steps):
                assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
                assert time.monotonic() < deadline, "the worker did not retrain in time"
                time.sleep(0.02)
            os.killpg(worker.pid, signal.SIGKILL)
            assert worker.wait(30) == -signal.SIGKILL
            held = platform.cases.get(SYSTEM, case.id)
            assert (held.state, held.claimed_by, held.claims) == ("running", "doomed", 1), held
            _wait_until_expired(platform, case.id)

            ran = _race(live.url, tokens["olga"])  # two workers find the expired lease at once
        assert sorted(len(r) for r in ran) == [0, 1], ran
        (resumed,) = [c for r in ran for c in r]
        assert resumed.id == case.id and resumed.claims == 2 and resumed.claimed_by in ("w1", "w2")
        succeeded = [s["step"] for s in resumed.steps if s["status"] == "succeeded"]
        assert succeeded[0] == "retrain" and len(succeeded) == len(set(succeeded)), resumed.steps
        assert all(s["actor"] == "olga" for s in resumed.steps)
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [1, 2]  # retrained once
        (reclaim,) = _audited(platform, "case.reclaim")
        assert reclaim.details["from_worker"] == "doomed" and reclaim.details["worker"] == resumed.claimed_by
        assert reclaim.details["steps_done"][0] == "retrain" and reclaim.details["claim"] == 2
        assert len(_audited(platform, "case.claim")) == 1
        assert platform.audit.verify(actor(platform, "audrey")).ok
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
        platform.close()


@pytest.mark.slow
def test_a_version_a_dead_worker_registered_is_recorded_not_trained_again_and_shown_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOURMASTER_HOME", str(tmp_path / "cli-home"))
    platform = Platform(make_settings(tmp_path / "home"))
    try:
        tokens, case = _open_case(platform, tmp_path)
        olga = actor(platform, "olga")
        with live_server(platform) as live, Client(url=live.url, token=tokens["olga"]) as hm:
            # The first worker claims, registers the retrained version for the case, and dies there.
            first = hm.claim_case("first", lease=2)
            assert first is not None and first.id == case.id and first.claims == 1
            assert hm.claim_case("second") is None  # the lease holds
            assert hm.retrain(PROJECT, "prod", case=case.id).version.number == 2
            _wait_until_expired(platform, case.id)
            second = hm.claim_case("second", lease=30)
            assert second is not None and (second.id, second.claims) == (case.id, 2)
            with pytest.raises(ConflictError, match="reclaimed by second"):  # a write under the dead claim
                hm.record_case_step(case.id, "retrain", "succeeded", links={"version": 3}, claim=first.claims)
            with pytest.raises(ConflictError, match="reclaimed by second"):
                platform.cases.renew(olga, case.id, first.claims)
            resumed = run_case(hm, second)
            shown = invoke(["cases", "show", str(case.id), "--url", live.url, "--token", tokens["vera"]])
            as_json = invoke(["cases", "show", str(case.id), "--url", live.url, "--token", tokens["vera"], "--json"])
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [1, 2]
        retrain = resumed.steps[0]
        assert retrain["step"] == "retrain" and retrain["status"] == "succeeded", resumed.steps
        assert retrain["links"]["version"] == 2 and "not trained again" in retrain["links"]["recovered"]
        assert resumed.version == 2 and [s["step"] for s in resumed.steps][:2] == ["retrain", "evaluate"]
        assert [a.details["from_worker"] for a in _audited(platform, "case.reclaim")] == ["first"]

        # cases show: every link whole (nested ones as JSON), and --json complete.
        assert shown.code == 0 and shown.crash is None, shown.err
        for step in resumed.steps:
            for key, value in step["links"].items():
                text = json.dumps(value, separators=(", ", ": ")) if isinstance(value, dict | list) else str(value)
                assert f"  {key}: {text}" in shown.out, (key, text, shown.out)
        assert json.loads(as_json.out)["steps"] == json.loads(json.dumps(resumed.steps))
        assert platform.audit.verify(actor(platform, "audrey")).ok
    finally:
        platform.close()


# The disk fills the moment ``WHEN`` starts: every write of this process past 512 bytes then fails (EFBIG from
# the kernel's file-size limit, the capture spool tests' technique), as on a full disk; the database is
# PostgreSQL, whose server process is not limited, so what fills is the artifact store's disk.
DISK_FILLS = """
import functools, importlib, resource, signal, sys
from harbourmaster.cli.main import run
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
module, owner, name = sys.argv[1].split(":")
target = getattr(importlib.import_module(module), owner) if owner else importlib.import_module(module)
real = getattr(target, name)

@functools.wraps(real)
def on_a_full_disk(*args, **kwargs):
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return real(*args, **kwargs)

setattr(target, name, on_a_full_disk)
run(sys.argv[2:])
"""


def _on_a_full_disk(when: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", textwrap.dedent(DISK_FILLS), when, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_a_full_disk_while_retraining_registers_and_while_evaluating_keeps_nothing_half_written(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(home), HARBOURMASTER_DATABASE_URL=postgres_url)
    for key in ("HARBOURMASTER_HOME", "HARBOURMASTER_DATABASE_URL"):
        monkeypatch.setenv(key, env[key])
    platform = Platform(make_settings(home, postgres_url))
    try:
        # Embedded mode (one person's store): retrain on dev's drifted, labelled traffic.
        number = platform.training.train(SYSTEM, write_project(tmp_path / "shifty")).version.number
        platform.deployments.deploy(SYSTEM, PROJECT, number, "dev")
        log_traffic(platform, frame(300, seed=11, shifted=True), version=number, environment="dev")
        artifacts = home / "artifacts"
        before = _files(artifacts)

        full = _on_a_full_disk(
            "harbourmaster.services.registry::save_bundle", ["retrain", PROJECT, "--env", "dev"], env
        )
        assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
        assert "the disk is full" in full.stderr and "free space on that disk" in full.stderr, full.stderr
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [1]  # nothing registered
        (run, *_) = platform.training.list_runs(SYSTEM, PROJECT)
        assert (run.kind, run.status, run.version_number) == ("retrain", "failed", None)
        assert "the disk is full" in (run.error or ""), run.error
        assert _files(artifacts) == before  # no blob, manifest or temporary file of the bundle left

        # Space freed: the same command registers v2.
        done = invoke(["retrain", PROJECT, "--env", "dev"])
        assert done.code == 0, done.err + str(done.crash)
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [1, 2]

        reports = set(_files(artifacts))
        when = "harbourmaster.services.retraining:RetrainService:record_challenger"
        full = _on_a_full_disk(when, ["evaluate", PROJECT, "2", "--env", "dev"], env)
        assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
        assert "the disk is full" in full.stderr and "run the command again" in full.stderr, full.stderr
        assert platform.evidence.list(SYSTEM, PROJECT, version=2) == []  # no verdict without its report
        assert _files(artifacts) == reports

        proved = invoke(["evaluate", PROJECT, "2", "--env", "dev", "--json"])
        assert proved.code == 0, proved.err + str(proved.crash)
        assert {e.check for e in platform.evidence.list(SYSTEM, PROJECT, version=2)} == {
            "beats_champion",
            "drift_fixed",
        }
        assert platform.audit.verify(SYSTEM).ok
    finally:
        platform.close()


def test_a_full_database_or_disk_is_told_apart_from_other_failures(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'small.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (blob TEXT)"))
        with pytest.raises(sa.exc.OperationalError) as caught, engine.begin() as connection:
            connection.execute(sa.text("PRAGMA max_page_count = 8"))  # SQLite's own "full" at 8 pages
            for _ in range(100):
                connection.execute(sa.text("INSERT INTO t VALUES (:b)"), {"b": "x" * 4000})
    finally:
        engine.dispose()
    full = storage_full(caught.value)
    assert isinstance(full, StorageFullError) and "writing to the database" in full.message
    assert full.http_status == 507 and "free space" in (full.hint or "")
    no_space = storage_full(OSError(errno.ENOSPC, "No space left on device", "/srv/hm/artifacts/x"))
    assert no_space is not None and "/srv/hm/artifacts/x" in no_space.message
    assert storage_full(OSError(errno.EACCES, "Permission denied")) is None
    assert storage_full(ValueError("database or disk is full")) is None  # only a driver's error says so
