"""Control-plane answer latency under mixed allowed and refused load, on SQLite and PostgreSQL.

One command (from the repository root):

    python benchmarks/control_plane/run.py [--postgres URL] [--seconds 10] [--clients 8]

Starts a control plane on 127.0.0.1 (a free port) over a fresh store per backend, with a viewer,
a data scientist and an admin; CLIENTS threads then call for SECONDS: half allowed calls (list
projects, list deployments, whoami, create a token) and half refused ones (a viewer revoking the
admin's token, a data scientist creating a user or reconfiguring prod: each a 403 and an audit
entry). Prints one Markdown table row per backend and kind: requests, req/s, p50, p99 and max
latency, and the count of answers that were not the expected status. Before issue 8 item 10 a
refusal on SQLite held every caller up to 30 s; here the max column is the figure to watch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from harbourmaster.api.app import create_app
from harbourmaster.config import Settings
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from loopback import serve_in_thread

SYSTEM = Actor.system("benchmark")


def _calls(admin_token_id: int) -> list[tuple[str, str, str, dict | None, int]]:
    return [
        ("allowed", "vera", "GET /api/v1/projects", None, 200),
        ("refused", "vera", f"DELETE /api/v1/tokens/{admin_token_id}", None, 403),
        ("allowed", "olga", "GET /api/v1/deployments", None, 200),
        ("refused", "dana", "POST /api/v1/users", {"name": "mallory", "roles": ["admin"]}, 403),
        ("allowed", "dana", "GET /api/v1/whoami", None, 200),
        ("refused", "dana", "PUT /api/v1/environments/prod", {"config": {}}, 403),
        ("allowed", "root", "POST /api/v1/tokens", {"name": "bench"}, 201),
        ("refused", "vera", "POST /api/v1/deployments/p/prod", {"version": 1}, 403),
    ]


def measure(backend: str, settings: Settings, seconds: float, clients: int) -> list[str]:
    platform = Platform(settings)
    tokens = {}
    for name, roles in (
        ("vera", ["viewer"]),
        ("dana", ["data-scientist"]),
        ("olga", ["operator"]),
        ("root", ["admin"]),
    ):
        platform.identity.create_user(SYSTEM, name, roles)
        tokens[name] = platform.identity.create_token(SYSTEM, name, "bench").secret
    admin_token_id = platform.identity.list_tokens(SYSTEM, "root")[0].id
    calls = _calls(admin_token_id)
    latencies: dict[str, list[float]] = {"allowed": [], "refused": []}
    unexpected = {"allowed": 0, "refused": 0}
    lock = threading.Lock()
    with serve_in_thread(create_app(platform)) as url:
        deadline = time.monotonic() + seconds

        def worker(offset: int) -> None:
            sessions = {
                name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tok}"}, timeout=60)
                for name, tok in tokens.items()
            }
            for index in itertools.count(offset):
                if time.monotonic() > deadline:
                    break
                kind, user, route, body, expected = calls[index % len(calls)]
                method, path = route.split(" ", 1)
                started = time.perf_counter()
                try:
                    status = sessions[user].request(method, path, json=body).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[kind].append(elapsed)
                    unexpected[kind] += status != expected
            for session in sessions.values():
                session.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
    platform.close()
    rows = []
    for kind, values in latencies.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")
        p50, top = statistics.median(values) * 1000, max(values) * 1000
        rows.append(
            f"| {backend} | {kind} | {len(values)} | {len(values) / seconds:.0f} | "
            f"{p50:.1f} | {p99 * 1000:.1f} | {top:.1f} | {unexpected[kind]} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{args.clients} client threads, {args.seconds:.0f} s per backend, half allowed and half refused calls; "
        f"{os.cpu_count()} CPUs, load average {load} at the start\n"
    )
    print("| backend | calls | requests | req/s | p50 ms | p99 ms | max ms | unexpected status |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "sqlite"
        for row in measure("SQLite", Settings.from_env({"HARBOURMASTER_HOME": str(home)}), args.seconds, args.clients):
            print(row, flush=True)
        schema = f"hm_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(args.postgres)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}options=-csearch_path%3D{schema}"
            env = {"HARBOURMASTER_HOME": str(Path(folder) / "pg"), "HARBOURMASTER_DATABASE_URL": url}
            for row in measure("PostgreSQL", Settings.from_env(env), args.seconds, args.clients):
                print(row, flush=True)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
