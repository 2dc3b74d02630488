"""Serving benchmark: Harbourmaster vs `mlflow models serve` vs a bare FastAPI app, side by side.

One command:  python benchmarks/serving/run.py [--duration 10] [--workers 1] [--multi-workers 2]
                                              [--skip-mlflow] [--skip-pandas]

Creates (once) a virtual environment for the peers under ~/.cache/harbourmaster-bench,
fits the same pipeline (breast-cancer, StandardScaler + LogisticRegression) for each
server, checks they give the same labels on 100 rows, loads each with wrk (1-row
requests at 1, 8 and 32 connections, 100-row requests at 8), measures Harbourmaster
with micro-batching off and on at 32 connections, then every server again with
--multi-workers workers (keep-alive, and a new connection per request), prints the
tables with ratios and the issue's targets, and writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as host_platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HARBOURMASTER_BENCH_CACHE", Path.home() / ".cache" / "harbourmaster-bench"))
PEERS = CACHE / "venv-peers"
LOADS = [("1 row", 1, 1), ("1 row", 1, 8), ("1 row", 1, 32), ("100 rows", 100, 8)]
NOTES_MARKER = "<!-- notes: kept by run.py -->"
MULTI_LOADS = [(8, False), (32, False), (8, True)]  # (connections, a new connection per request)

FIT = textwrap.dedent(
    """
    import sys, pickle
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    data = load_breast_cancer(as_frame=True)
    pipeline = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=5000))])
    pipeline.fit(data.data, data.target)
    """
)

# The strongest *naive* floor: parse JSON, build one numpy row per record in schema order, call
# predict on the same pipeline fitted on arrays (so sklearn has no feature names to check and
# never warns). No validation, no capture, no metrics.
BARE_APP = textwrap.dedent(
    """
    import json, os, pickle
    import numpy as np
    from fastapi import FastAPI, Request

    with open(os.environ["BENCH_MODEL"], "rb") as handle:
        model = pickle.load(handle)
    with open(os.environ["BENCH_COLUMNS"]) as handle:
        COLUMNS = json.load(handle)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        payload = await request.json()
        matrix = np.array([[record[c] for c in COLUMNS] for record in payload["records"]], dtype=np.float64)
        return {"predictions": model.predict(matrix).tolist()}
    """
)

# The same app as the issue author's likely peer: a pandas DataFrame per request, pipeline fitted on a
# DataFrame (what sklearn wants for feature names). Kept to show how much of a naive server's time is pandas.
BARE_PANDAS_APP = textwrap.dedent(
    """
    import os, pickle
    import pandas as pd
    from fastapi import FastAPI, Request

    with open(os.environ["BENCH_MODEL"], "rb") as handle:
        model = pickle.load(handle)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        payload = await request.json()
        frame = pd.DataFrame(payload["records"])
        return {"predictions": model.predict(frame).tolist()}
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get) ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def ensure_peers() -> Path:
    python = PEERS / "bin" / "python"
    if not (PEERS / "bin" / "mlflow").exists():
        print(f"creating the peers' virtual environment in {PEERS} (a few minutes, once) ...", flush=True)
        import sklearn

        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "mlflow", f"scikit-learn=={sklearn.__version__}", "fastapi"],
            check=True,
        )
    # Every server runs uvicorn with uvloop + httptools (what Harbourmaster depends on), so the
    # comparison is between applications, not between event loops or HTTP parsers.
    if subprocess.run([str(python), "-c", "import uvloop, httptools"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "uvicorn[standard]"], check=True)
    return python


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run_wrk(
    wrk: str, url: str, body: str, connections: int, duration: int, work: Path, *, close: bool = False
) -> dict[str, Any]:
    script = work / f"post-{abs(hash((body, close))) % 10**8}.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if close:  # a new TCP connection per request (how a multi-worker server spreads load evenly)
        headers += 'wrk.headers["Connection"] = "close"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}')
    threads = max(1, min(connections, 2))
    result = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    out = result.stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": millis("50%"),
        "p99": millis("99%"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


class Bench:
    """Starts the servers at a worker count, checks they agree, loads them with wrk."""

    def __init__(self, args: argparse.Namespace, wrk: str, work: Path, env: dict[str, str], peers: Path) -> None:
        self.args, self.wrk, self.work, self.env, self.peers = args, wrk, work, env, peers
        self.processes: list[subprocess.Popen] = []
        self.results: dict[tuple[str, ...], dict[str, Any]] = {}

    def _spawn(self, command: list[str], **kwargs: Any) -> subprocess.Popen:
        process = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
        )
        self.processes.append(process)
        return process

    def start(self, workers: int, row: dict, rows: list[dict]) -> dict[str, dict[str, Any]]:
        work, env = self.work, self.env
        servers: dict[str, dict[str, Any]] = {}
        port = free_port()
        process = self._spawn(
            [
                sys.executable,
                "-m",
                "harbourmaster",
                "serve",
                "--env",
                "dev",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
        )
        servers["Harbourmaster"] = {
            "process": process,
            "base": f"http://127.0.0.1:{port}",
            "url": f"http://127.0.0.1:{port}/v1/projects/bench/predict",
            "ready": f"http://127.0.0.1:{port}/v2/models/bench/ready",
            "one": json.dumps(row),
            "many": json.dumps({"records": rows}),
            "answers": lambda body: body["predictions"],
        }
        uvicorn_flags = ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        for name, module, model in (
            ("bare FastAPI", "bare_app", "model-arrays.pkl"),
            ("bare FastAPI (pandas)", "bare_pandas_app", "model.pkl"),
        ):
            if name.endswith("(pandas)") and self.args.skip_pandas:
                continue
            port = free_port()
            process = self._spawn(
                [str(PEERS / "bin" / "uvicorn"), f"{module}:app", "--port", str(port), *uvicorn_flags],
                cwd=work,
                env={**env, "BENCH_MODEL": str(work / model), "BENCH_COLUMNS": str(work / "columns.json")},
            )
            servers[name] = {
                "process": process,
                "url": f"http://127.0.0.1:{port}/predict",
                "ready": f"http://127.0.0.1:{port}/docs",
                "one": json.dumps({"records": [row]}),
                "many": json.dumps({"records": rows}),
                "answers": lambda body: body["predictions"],
            }
        if not self.args.skip_mlflow:
            port = free_port()
            process = self._spawn(
                [
                    str(PEERS / "bin" / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    str(work / "mlflow-model"),
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-w",
                    str(workers),
                ],
                env={**env, "PATH": f"{PEERS / 'bin'}:{env.get('PATH', '')}"},
            )
            servers["mlflow models serve"] = {
                "process": process,
                "url": f"http://127.0.0.1:{port}/invocations",
                "ready": f"http://127.0.0.1:{port}/ping",
                "one": json.dumps({"dataframe_records": [row]}),
                "many": json.dumps({"dataframe_records": rows}),
                "answers": lambda body: body["predictions"],
            }
        for server in servers.values():
            wait_ready(server["ready"], server["process"])
        self.check_agreement(servers)
        return servers

    @staticmethod
    def check_agreement(servers: dict[str, dict[str, Any]]) -> None:
        """Every server must give the same labels on the 100-row body before anything is measured."""
        answers = {}
        for name, server in servers.items():
            response = httpx.post(server["url"], content=server["many"], headers={"content-type": "application/json"})
            response.raise_for_status()
            answers[name] = [int(v) for v in server["answers"](response.json())]
        reference = next(iter(answers.values()))
        disagree = {name: a for name, a in answers.items() if a != reference}
        assert not disagree, f"servers disagree on the 100 rows: {sorted(disagree)} vs {next(iter(answers))}"

    def stop(self) -> None:
        for process in self.processes:
            stop(process)
        self.processes = []

    def measure(self, key: tuple[str, ...], url: str, body: str, connections: int, *, close: bool = False) -> None:
        label = " / ".join(key)
        print(f"{label:70} ...", end=" ", flush=True)
        run_wrk(self.wrk, url, body, connections, 2, self.work, close=close)  # warm-up
        result = run_wrk(self.wrk, url, body, connections, self.args.duration, self.work, close=close)
        self.results[key] = result
        note = f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""
        print(f"{result['rps']:8.0f} req/s  p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms{note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load (default 10)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server, main table (default 1)")
    parser.add_argument(
        "--multi-workers", type=int, default=2, help="worker count of the multi-worker table (default 2; 0 skips it)"
    )
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-pandas", action="store_true", help="leave out the pandas variant of the bare app")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    wrk = ensure_wrk()
    peers = ensure_peers()
    work = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    load_before = os.getloadavg()
    bench: Bench | None = None
    try:
        # The same pipeline, fitted deterministically, for every server (on a DataFrame, and on arrays
        # for the numpy peer; the servers must then agree on every label before anything is measured).
        subprocess.run(
            [
                str(peers),
                "-c",
                FIT
                + textwrap.dedent(f"""
                import json
                import mlflow.sklearn
                pickle.dump(pipeline, open({str(work / "model.pkl")!r}, "wb"))
                mlflow.sklearn.save_model(pipeline, {str(work / "mlflow-model")!r}, serialization_format="cloudpickle")
                arrays = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=5000))])
                arrays.fit(data.data.to_numpy(), data.target.to_numpy())
                pickle.dump(arrays, open({str(work / "model-arrays.pkl")!r}, "wb"))
                json.dump([str(c) for c in data.data.columns], open({str(work / "columns.json")!r}, "w"))
                """),
            ],
            check=True,
            capture_output=True,
        )
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "bare_pandas_app.py").write_text(BARE_PANDAS_APP)
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer(as_frame=True)
        home = work / "hm-home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
        env["HARBOURMASTER_HOME"] = str(home)
        # Two deployments of the same pipeline in dev: "bench" (micro-batching off, the default)
        # and "bench-mb" (micro-batching on), so both are measured against the same replica.
        setup = FIT + textwrap.dedent(
            f"""
            import json
            from harbourmaster.client import Client
            from harbourmaster.services.actors import Actor
            from harbourmaster.services.platform import Platform
            with Client() as hm:
                hm.register("bench", pipeline, data.frame, target="target", metrics={{"accuracy": 1.0}})
                hm.register("bench-mb", pipeline, data.frame, target="target", metrics={{"accuracy": 1.0}})
            platform = Platform()
            owner = Actor.local_owner()
            platform.deployments.deploy(owner, "bench", 1, "dev")
            platform.deployments.deploy(owner, "bench-mb", 1, "dev")
            platform.deployments.set_options(owner, "bench-mb", "dev", {{"microbatch": {{"enabled": True}}}})
            sla = platform.environments.get("dev").config.sla
            options = platform.deployments.get(owner, "bench-mb", "dev").options
            found = {{"p99_ms": sla.p99_ms, "microbatch": options.get("microbatch")}}
            json.dump(found, open({str(work / "dev.json")!r}, "w"))
            platform.close()
            """
        )
        subprocess.run([sys.executable, "-c", setup], env=env, check=True)
        dev = json.loads((work / "dev.json").read_text())

        row = {k: float(v) for k, v in data.data.iloc[0].items()}
        rows = [{k: float(v) for k, v in r.items()} for r in data.data.head(100).to_dict(orient="records")]
        bench = Bench(args, wrk, work, env, peers)

        # 1. the main table, at --workers
        servers = bench.start(args.workers, row, rows)
        status = httpx.get(servers["Harbourmaster"]["base"] + "/v1/status").json()
        for name, server in servers.items():
            for label, size, connections in LOADS:
                body = server["one"] if size == 1 else server["many"]
                bench.measure(("main", name, label, str(connections)), server["url"], body, connections)
        # 2. micro-batching off vs on, 32 connections, back to back on the same replica
        ours = servers["Harbourmaster"]
        for project, key in (("bench", "off"), ("bench-mb", "on")):
            url = ours["base"] + f"/v1/projects/{project}/predict"
            bench.measure(("microbatch", key, "1 row", "32"), url, ours["one"], 32)
        bench.stop()
        # 3. every server again at --multi-workers: keep-alive and a new connection per request
        if args.multi_workers > 0:
            servers = bench.start(args.multi_workers, row, rows)
            for name, server in servers.items():
                for connections, close in MULTI_LOADS:
                    key = ("multi", name, "new connection per request" if close else "keep-alive", str(connections))
                    bench.measure(key, server["url"], server["one"], connections, close=close)
            bench.stop()
        names = list(servers)
        report = render(bench.results, names, args, status, dev, (load_before, os.getloadavg()))
        print("\n" + report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        # Hand-written analysis below NOTES_MARKER survives a re-run (re-read it against the new figures).
        previous = args.output.read_text() if args.output.exists() else ""
        if NOTES_MARKER in previous:
            report += "\n" + previous[previous.index(NOTES_MARKER) :]
        args.output.write_text(report)
        print(f"written to {args.output}")
    finally:
        if bench is not None:
            bench.stop()
        shutil.rmtree(work, ignore_errors=True)


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{host_platform.machine()}, {os.cpu_count()} CPUs{f' ({model})' if model else ''}"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("uvicorn", "uvloop", "httptools", "onnxruntime", "scikit-learn"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} (absent)")
    return ", ".join(found)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def render(results: dict, names: list[str], args: argparse.Namespace, status: dict, dev: dict, loads: tuple) -> str:
    peers = names[1:]
    before, after = loads
    lines = [
        "# Serving benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}; Python {host_platform.python_version()}, "
        f"{_versions()}. wrk on 127.0.0.1 with {args.duration}s per load after a 2 s warm-up, **sharing the CPUs "
        f"with the servers**; load average {before[0]:.1f} before the run, {after[0]:.1f} after (other work on "
        "the machine shows up as noise). Pipeline: scikit-learn breast-cancer, StandardScaler + LogisticRegression, "
        "30 numeric features. Harbourmaster runs with validation, prediction capture (Parquet) and metrics on "
        f"(inference engine: {_engine(status)}). Every server runs uvicorn with uvloop and httptools, the same "
        "worker count, and must return the same 100 labels before it is measured.",
        "",
        "Peers: **bare FastAPI** parses JSON, builds a numpy row per record in schema order and calls `predict` on "
        "the pipeline fitted on arrays (the strongest naive server: no DataFrame, no warnings, no validation, no "
        "logging); **bare FastAPI (pandas)** builds a DataFrame per request instead; **mlflow models serve** "
        "serves the same pipeline saved with `mlflow.sklearn` (its default uvicorn settings).",
        "",
        "Reproduce: `python benchmarks/serving/run.py` (options: `--duration 30`, `--workers N`, "
        "`--multi-workers N`, `--skip-mlflow`, `--skip-pandas`).",
        "",
        f"## {args.workers} worker per server",
        "",
        "| load | connections | server | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, _size, connections in LOADS:
        for name in names:
            r = results[("main", name, label, str(connections))]
            lines.append(
                f"| {label} | {connections} | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['errors']} |"
            )
    lines += [
        "",
        "Ratios (Harbourmaster / peer; req/s higher is better, p99 lower is better):",
        "",
        "| load | connections | vs | req/s ratio | p99 ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for label, _size, connections in LOADS:
        ours = results[("main", "Harbourmaster", label, str(connections))]
        for name in peers:
            peer = results[("main", name, label, str(connections))]
            lines.append(
                f"| {label} | {connections} | {name} | {_ratio(ours['rps'], peer['rps']):.2f}x | "
                f"{_ratio(ours['p99'], peer['p99']):.2f}x |"
            )
    off, on = results.get(("microbatch", "off", "1 row", "32")), results.get(("microbatch", "on", "1 row", "32"))
    if off and on:
        sla = dev.get("p99_ms")
        lines += [
            "",
            "## Micro-batching (Harbourmaster, 1-row requests, 32 connections, measured back to back)",
            "",
            f"Deployment option `microbatch` = `{json.dumps(dev.get('microbatch'))}`; dev SLA p99 = {sla} ms.",
            "",
            "| micro-batching | req/s | p50 ms | p99 ms | p99 within the dev SLA |",
            "|---|---:|---:|---:|---|",
        ]
        for key, r in (("off", off), ("on", on)):
            within = "yes" if sla and r["p99"] <= sla else "no" if sla else "no SLA set"
            lines.append(f"| {key} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {within} |")
        ratios = f"{_ratio(on['rps'], off['rps']):.2f}x req/s, {_ratio(on['p99'], off['p99']):.2f}x p99"
        lines += ["", f"On / off: {ratios}."]
    multi = [key for key in results if key[0] == "multi"]
    if multi:
        lines += [
            "",
            f"## {args.multi_workers} workers per server (1-row requests)",
            "",
            "Keep-alive connections are spread over the workers by whichever process accepts first, so they can "
            "pile onto one worker; with a new connection per request (`Connection: close`) every request is "
            "accepted anew. Socket errors are wrk's (connect/read/write/timeout).",
            "",
            "| connections | server | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for connections, close in MULTI_LOADS:
            mode = "new connection per request" if close else "keep-alive"
            for name in names:
                r = results.get(("multi", name, mode, str(connections)))
                if r is None:
                    continue
                lines.append(
                    f"| {connections}, {mode} | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                    f"{r['errors']} | {r['socket_errors'] or '-'} |"
                )
        lines += ["", "Ratios (Harbourmaster / peer):", "", "| connections | vs | req/s ratio | p99 ratio |"]
        lines.append("|---|---|---:|---:|")
        for connections, close in MULTI_LOADS:
            mode = "new connection per request" if close else "keep-alive"
            ours = results.get(("multi", "Harbourmaster", mode, str(connections)))
            for name in peers:
                peer = results.get(("multi", name, mode, str(connections)))
                if ours and peer:
                    lines.append(
                        f"| {connections}, {mode} | {name} | {_ratio(ours['rps'], peer['rps']):.2f}x | "
                        f"{_ratio(ours['p99'], peer['p99']):.2f}x |"
                    )
    lines += ["", "## The issue's targets (1 worker, 1-row requests, 8 connections)", ""]
    ours = results[("main", "Harbourmaster", "1 row", "8")]
    checks = []
    if ("main", "mlflow models serve", "1 row", "8") in results:
        mlflow = results[("main", "mlflow models serve", "1 row", "8")]
        checks += [
            (">= 10x mlflow's req/s", _ratio(ours["rps"], mlflow["rps"]), 10.0, True),
            ("<= 1/10 of mlflow's p99", _ratio(ours["p99"], mlflow["p99"]), 0.1, False),
        ]
    bare = results[("main", "bare FastAPI", "1 row", "8")]
    checks += [
        (">= 1.0x the bare FastAPI app's req/s", _ratio(ours["rps"], bare["rps"]), 1.0, True),
        ("p99 no worse than the bare FastAPI app's", _ratio(ours["p99"], bare["p99"]), 1.0, False),
    ]
    lines += ["| target | measured | met |", "|---|---:|---|"]
    for text, value, bound, higher in checks:
        met = value >= bound if higher else value <= bound
        lines.append(f"| {text} | {value:.2f}x | {'yes' if met else '**no**'} |")
    lines.append("")
    return "\n".join(lines)


def _engine(status: dict) -> str:
    return str(status.get("loaded", {}).get("bench", {}).get("champion", {}).get("engine"))


if __name__ == "__main__":
    main()
