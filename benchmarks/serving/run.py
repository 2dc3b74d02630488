"""Serving benchmark: Harbourmaster vs `mlflow models serve` vs a bare FastAPI app, side by side.

One command:  python benchmarks/serving/run.py [--duration 10] [--workers 1] [--skip-mlflow]

Creates (once) a virtual environment for the peers under ~/.cache/harbourmaster-bench,
fits the same pipeline (breast-cancer, StandardScaler + LogisticRegression) for each
server, checks they give the same predictions, loads each with wrk (1-row requests at
1, 8 and 32 connections, 100-row requests at 8), prints a table and writes
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
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

BARE_APP = textwrap.dedent(
    """
    import pickle
    import pandas as pd
    from fastapi import FastAPI, Request

    with open(__import__("os").environ["BENCH_MODEL"], "rb") as handle:
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
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "mlflow",
                f"scikit-learn=={sklearn.__version__}",
                "fastapi",
                "uvicorn",
            ],
            check=True,
        )
    return python


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run_wrk(wrk: str, url: str, body: str, connections: int, duration: int, work: Path) -> dict[str, float]:
    script = work / f"post-{abs(hash(body)) % 10**8}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
    )
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
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load (default 10)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    wrk = ensure_wrk()
    peers = ensure_peers()
    work = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        # The same pipeline, fitted deterministically, for every server.
        model_pickle = work / "model.pkl"
        mlflow_dir = work / "mlflow-model"
        subprocess.run(
            [
                str(peers),
                "-c",
                FIT
                + textwrap.dedent(f"""
                import mlflow.sklearn
                pickle.dump(pipeline, open({str(model_pickle)!r}, "wb"))
                mlflow.sklearn.save_model(pipeline, {str(mlflow_dir)!r}, serialization_format="cloudpickle")
                """),
            ],
            check=True,
            capture_output=True,
        )
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer(as_frame=True)
        home = work / "hm-home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
        env["HARBOURMASTER_HOME"] = str(home)
        setup = FIT + textwrap.dedent(
            """
            from harbourmaster.client import Client
            from harbourmaster.services.actors import Actor
            from harbourmaster.services.platform import Platform
            with Client() as hm:
                hm.register("bench", pipeline, data.frame, target="target", metrics={"accuracy": 1.0})
            platform = Platform()
            platform.deployments.deploy(Actor.local_owner(), "bench", 1, "dev")
            platform.close()
            """
        )
        subprocess.run([sys.executable, "-c", setup], env=env, check=True)

        row = {k: float(v) for k, v in data.data.iloc[0].items()}
        rows = [{k: float(v) for k, v in r.items()} for r in data.data.head(100).to_dict(orient="records")]
        servers: dict[str, dict[str, Any]] = {}

        port = free_port()
        processes.append(
            subprocess.Popen(
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
                    str(args.workers),
                ],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        servers["Harbourmaster"] = {
            "url": f"http://127.0.0.1:{port}/v1/projects/bench/predict",
            "ready": f"http://127.0.0.1:{port}/v2/health/ready",
            "one": json.dumps(row),
            "many": json.dumps({"records": rows}),
            "answer": lambda body: body.get("prediction", (body.get("predictions") or [None])[0]),
        }
        port = free_port()
        (work / "bare_app.py").write_text(BARE_APP)
        processes.append(
            subprocess.Popen(
                [
                    str(PEERS / "bin" / "uvicorn"),
                    "bare_app:app",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=work,
                env={**env, "BENCH_MODEL": str(model_pickle)},
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        servers["bare FastAPI"] = {
            "url": f"http://127.0.0.1:{port}/predict",
            "ready": f"http://127.0.0.1:{port}/docs",
            "one": json.dumps({"records": [row]}),
            "many": json.dumps({"records": rows}),
            "answer": lambda body: body["predictions"][0],
        }
        if not args.skip_mlflow:
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        str(PEERS / "bin" / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        str(mlflow_dir),
                        "--env-manager",
                        "local",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-w",
                        str(args.workers),
                    ],
                    env={**env, "PATH": f"{PEERS / 'bin'}:{env.get('PATH', '')}"},
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            servers["mlflow models serve"] = {
                "url": f"http://127.0.0.1:{port}/invocations",
                "ready": f"http://127.0.0.1:{port}/ping",
                "one": json.dumps({"dataframe_records": [row]}),
                "many": json.dumps({"dataframe_records": rows}),
                "answer": lambda body: body["predictions"][0],
            }
        for name, server in servers.items():
            wait_ready(server["ready"], processes[list(servers).index(name)])
        # Same predictions everywhere (Harbourmaster may run an exact ONNX copy of the pipeline).
        answers = {}
        for name, server in servers.items():
            response = httpx.post(server["url"], content=server["one"], headers={"content-type": "application/json"})
            response.raise_for_status()
            answers[name] = server["answer"](response.json())
        assert len(set(map(str, answers.values()))) == 1, f"servers disagree: {answers}"
        engine = httpx.get(servers["Harbourmaster"]["url"].replace("/v1/projects/bench/predict", "/v1/status")).json()

        results: dict[tuple[str, str, int], dict[str, float]] = {}
        for name, server in servers.items():
            for label, size, connections in LOADS:
                body = server["one"] if size == 1 else server["many"]
                print(f"{name:22} {label:8} {connections:>2} connections ...", end=" ", flush=True)
                run_wrk(wrk, server["url"], body, connections, 2, work)  # warm-up
                result = run_wrk(wrk, server["url"], body, connections, args.duration, work)
                results[(name, label, connections)] = result
                print(
                    f"{result['rps']:8.0f} req/s  p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms", flush=True
                )
        report = render(results, servers, args, engine)
        print("\n" + report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
        print(f"written to {args.output}")
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def render(results: dict, servers: dict, args: argparse.Namespace, status: dict) -> str:
    names = list(servers)
    lines = [
        "# Serving benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {host_platform.machine()} with {os.cpu_count()} CPUs, "
        f"{args.workers} worker(s) per server, wrk {args.duration}s per load on 127.0.0.1 (wrk shares the CPUs). "
        "Pipeline: scikit-learn breast-cancer, StandardScaler + LogisticRegression, 30 numeric features. "
        "Harbourmaster runs with validation, prediction capture and metrics on "
        f"(inference engine: {_engine(status)}).",
        "",
        "Reproduce: `python benchmarks/serving/run.py` (add `--duration 30` for steadier figures).",
        "",
        "| load | connections | server | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, _size, connections in LOADS:
        for name in names:
            r = results[(name, label, connections)]
            figures = f"{r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']}"
            lines.append(f"| {label} | {connections} | {name} | {figures} |")
    lines += [
        "",
        "Ratios (Harbourmaster / peer):",
        "",
        "| load | connections | vs | req/s ratio | p99 ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for label, _size, connections in LOADS:
        ours = results[("Harbourmaster", label, connections)]
        for name in names[1:]:
            peer = results[(name, label, connections)]
            rps = ours["rps"] / peer["rps"] if peer["rps"] else float("nan")
            p99 = ours["p99"] / peer["p99"] if peer["p99"] else float("nan")
            lines.append(f"| {label} | {connections} | {name} | {rps:.2f}x | {p99:.2f}x |")
    lines.append("")
    return "\n".join(lines)


def _engine(status: dict) -> str:
    return str(status.get("loaded", {}).get("bench", {}).get("champion", {}).get("engine"))


if __name__ == "__main__":
    main()
