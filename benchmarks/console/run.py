"""Console page times on a large store: 1,000 versions and 100,000 audit entries (SQLite or PostgreSQL).

One command (from the repository root):

    python benchmarks/console/run.py [--postgres URL] [--versions 1000] [--audit 100000] [--rounds 20]

Fills a fresh store: users through the services; 1,000 versions of one project inserted as rows (a
bundle per version would take minutes and the pages never read bundles); deployments in dev and test
and test wanting one sign-off for dev's champion, through the services; 100,000 audit entries appended as rows
that continue the signed chain (each one hashed and signed with the store's key, exactly as
``AuditService.record`` does), so the audit page's verification checks a valid chain. Then serves the
control plane on 127.0.0.1, logs in to the console as an admin and as an approver over HTTP (httpx),
and times each page ROUNDS times after two warm-up loads. Prints a Markdown table: page, p50, p95 and
max wall milliseconds per load, the benchmark process's CPU milliseconds per load (the control plane
and its client: on a shared, oversubscribed machine the wall figures mostly measure waiting for a CPU;
PostgreSQL's own work is in its server, not in this figure), bytes. The chain's full verification
(``POST /console/audit/chain``, the audit page's "Verify the whole chain now" button) is timed apart:
it checks every signature, so it grows with the log.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from charts_fill import chart_pages, fill_charts  # the deployment, drift and runs pages' data

from console.flood import login_flood  # a flood of failed log-ins, legitimate page loads meanwhile
from harbourmaster.api.app import create_app
from harbourmaster.config import Settings
from harbourmaster.core.audit_chain import entry_hash, sign
from harbourmaster.core.environments import ApprovalRequirement
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow, ProjectRow, VersionRow
from loopback import serve_in_thread

SYSTEM = Actor.system("benchmark")
PROJECT = "bench"
ACTIONS = (
    "version.register",
    "deployment.deploy",
    "version.approve",
    "token.create",
    "predict.access",
    "denied.deploy",
)
PEOPLE = ("dana", "olga", "rita", "bob", "ada", "vera")


def fill(platform: Platform, versions: int, audit_entries: int) -> dict[str, str]:
    tokens = {}
    for name, roles in (("root", ["admin"]), ("rita", ["approver"]), ("dana", ["data-scientist"])):
        platform.identity.create_user(SYSTEM, name, roles)
        tokens[name] = platform.identity.create_token(SYSTEM, name, "bench").secret
    platform.registry.create_project(SYSTEM, PROJECT, "benchmark project")
    columns = [
        {"name": f"f{i}", "dtype": "float", "nullable": False, "minimum": 0.0, "maximum": 1.0, "role": "feature"}
        for i in range(30)
    ]
    started = datetime.now(UTC) - timedelta(days=versions)
    with platform.db.transaction() as session:
        project_id = session.scalar(select(ProjectRow.id).where(ProjectRow.name == PROJECT))
        session.execute(
            insert(VersionRow),
            [
                {
                    "project_id": project_id,
                    "number": n,
                    "digest": f"{n:064x}",
                    "format": "sklearn",
                    "input_schema": {"columns": columns},
                    "output_schema": {"task": "classification", "dtype": "integer", "classes": [0, 1]},
                    "metrics": {"accuracy": 0.9 + (n % 97) / 1000, "roc_auc": 0.95 + (n % 41) / 1000},
                    "lineage": {"created_by": "dana", "data": {"rows": 10_000 + n, "fingerprint": f"{n:064x}"}},
                    "created_by": "dana",
                    "created_at": started + timedelta(days=n),
                    "code_modules": [],
                }
                for n in range(1, versions + 1)
            ],
        )
    for number in (versions - 1, versions):  # dev's history; test then wants one sign-off for the champion
        platform.deployments.deploy(SYSTEM, PROJECT, number, "dev")
    config = platform.environments.get("test").config.model_copy(deep=True)
    config.approvals.required = [ApprovalRequirement(role="approver", count=1)]
    platform.environments.configure(SYSTEM, "test", config.model_dump(mode="json"))
    append_audit(platform, audit_entries)
    fill_charts(platform, PROJECT, "dev")
    return tokens


def append_audit(platform: Platform, count: int) -> None:
    """``count`` entries continuing the signed chain, in batches (what ``AuditService.record`` writes)."""
    key = platform.audit._signing_key()  # the store's own key: the benchmark plays the control plane
    with platform.db.reader() as session:
        last = session.execute(
            select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
        ).first()
    seq, prev = last.seq, last.hash
    moment = datetime.now(UTC) - timedelta(seconds=count)
    batch: list[dict] = []
    for index in range(count):
        seq += 1
        entry = {
            "seq": seq,
            "at": (moment + timedelta(seconds=index)).isoformat(timespec="microseconds"),
            "actor": PEOPLE[index % len(PEOPLE)],
            "address": "127.0.0.1",
            "action": ACTIONS[index % len(ACTIONS)],
            "target": f"{PROJECT}:v{1 + index % 1000}",
            "environment": ("dev", "test", "prod")[index % 3],
            "outcome": "denied" if index % len(ACTIONS) == len(ACTIONS) - 1 else "allowed",
            "before": None,
            "after": {"n": index},
            "details": {},
            "prev_hash": prev,
        }
        entry["hash"] = entry_hash(entry)
        entry["signature"] = sign(key, entry["hash"].encode())
        prev = entry["hash"]
        batch.append(entry)
        if len(batch) == 5000:
            _insert(platform, batch)
            batch = []
    if batch:
        _insert(platform, batch)


def _insert(platform: Platform, rows: list[dict]) -> None:
    with platform.db.transaction() as session:
        session.execute(insert(AuditEventRow), rows)


def login(client: httpx.Client, token: str) -> None:
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = client.post("/console/login", data={"token": token, "csrf": csrf, "next": "/console/"})
    assert answer.status_code == 303, answer.text


def time_page(client: httpx.Client, path: str, rounds: int) -> tuple[list[float], int, float]:
    """Wall milliseconds of each load, the page's size, and this process's CPU milliseconds per load."""
    for _ in range(2):
        client.get(path)
    times, size = [], 0
    cpu = time.process_time()
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
        size = len(answer.content)
    return times, size, (time.process_time() - cpu) * 1000 / rounds


def measure(label: str, settings: Settings, versions: int, audit_entries: int, rounds: int) -> list[str]:
    platform = Platform(settings)
    started = time.perf_counter()
    tokens = fill(platform, versions, audit_entries)
    print(f"[{label}] filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    with platform.db.reader() as session:
        head = session.scalar(select(func.max(AuditEventRow.seq)))
    pages = [
        ("root", "/console/"),
        ("root", "/console/projects"),
        ("root", f"/console/projects/{PROJECT}"),
        ("root", f"/console/projects/{PROJECT}?offset=950&version=10"),
        ("root", f"/console/projects/{PROJECT}?old=1&new={versions}"),
        ("rita", "/console/approvals"),
        ("root", "/console/audit"),
        ("root", "/console/audit?offset=99900"),
        ("root", f"/console/audit?offset=99900&before={head - 99_899}"),  # the same page, as its links ask for it
        ("root", "/console/audit?action=version.approve&environment=prod"),
        ("root", "/console/audit?by=vera&outcome=denied&offset=1000"),
        ("root", "/console/audit?target=v999"),
        *(("root", path) for path in chart_pages(PROJECT, "dev")),
    ]
    rows = []
    app = create_app(platform)
    gc.collect()  # as `harbourmaster server` does before serving (the fill's garbage first)
    gc.freeze()
    with serve_in_thread(app) as url:
        clients = {name: httpx.Client(base_url=url, timeout=120) for name in ("root", "rita")}
        for name, client in clients.items():
            login(client, tokens[name])
        for user, path in pages:
            times, size, cpu = time_page(clients[user], path, rounds)
            p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
            rows.append(
                f"| {label} | `{path}` ({user}) | {statistics.median(times):.0f} | {p95:.0f} | {max(times):.0f} | "
                f"{cpu:.0f} | {size:,} |"
            )
        page = clients["root"].get("/console/audit")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        chain = []
        cpu = time.process_time()
        for _ in range(2):
            begun = time.perf_counter()
            answer = clients["root"].post("/console/audit/chain", data={"csrf": csrf})
            chain.append((time.perf_counter() - begun) * 1000)
            assert answer.status_code == 200 and 'data-ok="true"' in answer.text, answer.text[:500]
            size = len(answer.content)
        rows.append(
            f"| {label} | `POST /console/audit/chain` (full verification) | {statistics.median(chain):.0f} | - | "
            f"{max(chain):.0f} | {(time.process_time() - cpu) * 500:.0f} | {size:,} |"
        )
        since = datetime.now(UTC)
        flood = login_flood(url, clients["rita"], "/console/approvals", attempts=2000, seconds=10.0, threads=8)
        assert set(flood.statuses) == {401} and set(flood.page_statuses) == {200}, (flood.statuses, flood.page_statuses)
        deadline = time.monotonic() + 20  # the count still open when the flood stops is flushed after it
        while True:
            denied, _ = platform.audit.search(SYSTEM, action="console.login", outcome="denied", since=since, limit=1000)
            if sum(e["details"].get("count", 1) for e in denied) >= flood.attempts or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        p50, p95, most = flood.page_figures()
        counted = sum(entry["details"].get("count", 1) for entry in denied)
        rows.append(
            f"| {label} | `/console/approvals` (rita) during {flood.attempts:,} failed log-ins in "
            f"{flood.seconds:.1f} s ({flood.rate:.0f}/s, 8 clients; {len(flood.page_ms)} loads, all 200; "
            f"{len(denied)} audit entries counting {counted:,}) | {p50:.0f} | {p95:.0f} | {most:.0f} | - | - |"
        )
        for client in clients.values():
            client.close()
    platform.close()
    gc.unfreeze()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL database (a scratch schema)")
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{args.versions:,} versions, {args.audit:,} audit entries, {args.rounds} rounds per page; "
        f"{os.cpu_count()} CPUs, load average {load} at the start\n"
    )
    print("| backend | page | p50 ms | p95 ms | max ms | CPU ms | bytes |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env({"HARBOURMASTER_HOME": home})
        for row in measure("sqlite", settings, args.versions, args.audit, args.rounds):
            print(row, flush=True)
    if args.postgres:
        schema = f"console_bench_{int(time.time())}"
        engine = create_engine(args.postgres)
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            with tempfile.TemporaryDirectory() as home:
                url = args.postgres + ("&" if "?" in args.postgres else "?") + f"options=-csearch_path%3D{schema}"
                settings = Settings.from_env({"HARBOURMASTER_HOME": home, "HARBOURMASTER_DATABASE_URL": url})
                for row in measure("postgresql", settings, args.versions, args.audit, args.rounds):
                    print(row, flush=True)
        finally:
            with engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
