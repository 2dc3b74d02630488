"""Serving benchmark: Harbourmaster as the README installs it, against what else people run.

One command:  python benchmarks/serving/run.py [--duration 10] [--rounds 3] [--fresh] [--skip-mlflow]
                                              [--skip-mlserver] [--multi-workers 0]

Servers (one worker each, uvicorn with uvloop + httptools wherever the server lets us choose):

- **Harbourmaster**: `harbourmaster serve` from a virtual environment made by this script with
  `pip install -e .` and nothing else (the README's install), validation + capture + metrics on;
- **Harbourmaster, scikit-learn engine**: the same replica code with ONNX turned off
  (`ReplicaOptions(use_onnx=False)`), i.e. what a pipeline with project code gets;
- **FastAPI + onnxruntime**: a bare FastAPI app running the same ONNX model (the same engine: the floor);
- **FastAPI + scikit-learn**: a bare FastAPI app calling `pipeline.predict` on a numpy row;
- **mlflow models serve** and **MLServer** (its scikit-learn runtime, what KServe users run), each in its
  own virtual environment (MLServer's versions pinned below);
- **raw ASGI, constant answer**: reads the body, answers a constant (the HTTP stack's ceiling here).

Every server must give the same 100 labels before anything is measured. The main load (1-row requests,
8 connections) is measured in interleaved rounds (every server once per round; median and spread); the
other loads once. After each Harbourmaster measurement the replica's capture queue is drained and the rows
in the prediction log are checked against the requests answered. Versions are read from each server's own
environment. Writes docs/benchmarks.md (the hand-written notes below its marker are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as host_platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers import free_port, stop, wait_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HARBOURMASTER_BENCH_CACHE", Path.home() / ".cache" / "harbourmaster-bench"))
DEFAULT_ENV = CACHE / "venv-default"  # pip install -e . (the README's install), nothing else
PEERS_ENV = CACHE / "venv-peers"  # mlflow
MLSERVER_ENV = CACHE / "venv-mlserver"
# uvloop 0.22+ raises in MLServer 1.7.1's inference workers (asyncio.get_event_loop() in a fresh process):
# pinned to the last release it works with.
MLSERVER_PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
MAIN = ("1 row", 1, 8)  # the load of the targets, measured in interleaved rounds
OTHER_LOADS = [("1 row", 1, 1), ("1 row", 1, 32), ("100 rows", 100, 8)]
MULTI_LOADS = [(8, False), (32, False), (8, True)]  # (connections, a new connection per request)
NOTES_MARKER = "<!-- notes: kept by run.py -->"
HM, HM_SK = "Harbourmaster", "Harbourmaster, scikit-learn engine"
FAST_ORT, FAST_SK = "FastAPI + onnxruntime", "FastAPI + scikit-learn"
MLFLOW, MLSERVER, CONSTANT = "mlflow models serve", "MLServer (scikit-learn runtime)", "raw ASGI, constant answer"
VERSIONS = {
    "default": [
        "harbourmaster",
        "scikit-learn",
        "skl2onnx",
        "onnxruntime",
        "numpy",
        "pandas",
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "orjson",
    ],
    "peers": ["mlflow", "scikit-learn", "fastapi", "uvicorn", "uvloop", "httptools"],
    "mlserver": ["mlserver", "mlserver-sklearn", "scikit-learn", "fastapi", "uvicorn", "uvloop", "httptools"],
}

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
    arrays = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=5000))])
    arrays.fit(data.data.to_numpy(), data.target.to_numpy())
    """
)

# The strongest *naive* scikit-learn server: parse JSON, one numpy row per record in schema order,
# `predict` on the pipeline fitted on arrays (no feature-name warning). No validation, capture, metrics.
FASTAPI_SKLEARN = textwrap.dedent(
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

# The same app on the same ONNX graph Harbourmaster runs (skl2onnx, double precision, one thread).
FASTAPI_ONNX = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI, Request

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
    NAME = session.get_inputs()[0].name
    with open(os.environ["BENCH_COLUMNS"]) as handle:
        COLUMNS = json.load(handle)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        payload = await request.json()
        matrix = np.array([[record[c] for c in COLUMNS] for record in payload["records"]], dtype=np.float64)
        labels = session.run(None, {NAME: matrix})[0]
        return {"predictions": labels.tolist()}
    """
)

# The HTTP stack's ceiling: read the body, answer a constant.
CONSTANT_APP = textwrap.dedent(
    """
    BODY = b'{"predictions":[0]}'
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    """
)

# The replica with ONNX off (no CLI flag for it: the serving module's own factory, with the options
# `serve` gives a process it owns).
SKLEARN_REPLICA = textwrap.dedent(
    """
    import dataclasses
    import sys
    import uvicorn
    from harbourmaster.serving.server import SWITCH_INTERVAL, create_app, options_from_env, uvicorn_config
    from harbourmaster.services.platform import Platform

    sys.setswitchinterval(SWITCH_INTERVAL)
    platform = Platform()
    app = create_app(platform, "dev", dataclasses.replace(options_from_env(), use_onnx=False))
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", int(sys.argv[1]))).run()
    platform.close()
    """
)

COUNT_LOG = textwrap.dedent(
    """
    import json, sys
    from harbourmaster.config import Settings
    from harbourmaster.store.artifacts import ArtifactStore
    from harbourmaster.store.prediction_log import PredictionLog
    log = PredictionLog(ArtifactStore(Settings.from_env().artifacts_url))
    print(json.dumps({project: log.count("dev", project) for project in sys.argv[1:]}))
    """
)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get) ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def _venv(path: Path, fresh: bool) -> Path:
    if fresh and path.exists():
        shutil.rmtree(path)
    python = path / "bin" / "python"
    if not python.exists():
        print(f"creating {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-U", "pip"], check=True)
    return python


def ensure_default(fresh: bool) -> Path:
    """The README's install: `pip install -e .` into a virtual environment of its own, no extras."""
    python = _venv(DEFAULT_ENV, fresh)
    print(f"pip install -e {ROOT} into {DEFAULT_ENV} ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
    return python


def ensure_peers(fresh: bool, sklearn_version: str) -> Path:
    python = _venv(PEERS_ENV, fresh)
    if not (PEERS_ENV / "bin" / "mlflow").exists():
        print("installing mlflow (a few minutes, once) ...", flush=True)
        pins = ["mlflow", f"scikit-learn=={sklearn_version}", "uvicorn[standard]"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return python


def ensure_mlserver(fresh: bool, sklearn_version: str) -> Path:
    python = _venv(MLSERVER_ENV, fresh)
    print("installing MLServer (a few minutes the first time) ...", flush=True)
    pins = [*MLSERVER_PINS, f"scikit-learn=={sklearn_version}"]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return python


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    """Package versions as the environment of ``python`` sees them."""
    code = (
        "import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
        "for name in sys.argv[1:]:\n    try: out[name] = version(name)\n"
        "    except PackageNotFoundError: out[name] = 'absent'\nprint(json.dumps(out))"
    )
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    found["python"] = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    return found


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = Path(process.args_log).read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=2).status_code < 300:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def run_wrk(
    wrk: str, url: str, body: str, connections: int, duration: int, work: Path, *, close: bool = False
) -> dict[str, Any]:
    script = work / f"post-{abs(hash((body, close))) % 10**8}.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if close:  # a new TCP connection per request (how a multi-worker server spreads load evenly)
        headers += 'wrk.headers["Connection"] = "close"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}')
    threads = max(1, min(connections, 2))
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency"]
    result = subprocess.run([*command, "-s", str(script), url], capture_output=True, text=True, timeout=duration + 60)
    out = result.stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "p50": millis("50%"),
        "p99": millis("99%"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


class Bench:
    """Starts the servers, checks they agree, loads them with wrk, and reconciles the prediction log."""

    def __init__(self, args: argparse.Namespace, wrk: str, work: Path, env: dict[str, str]) -> None:
        self.args, self.wrk, self.work, self.env = args, wrk, work, env
        self.default = DEFAULT_ENV / "bin"
        self.processes: list[subprocess.Popen] = []
        self.results: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self.expected: dict[str, tuple[int, int]] = {}  # project -> (answered rows, rows possibly in flight)
        self.checks: list[dict[str, Any]] = []

    def _spawn(self, command: list[str], **kwargs: Any) -> subprocess.Popen:
        log = open(self.work / f"server-{len(self.processes)}.log", "wb")  # noqa: SIM115 (the child keeps it)
        process = subprocess.Popen(command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        process.args_log = log.name  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def _uvicorn(self, name: str, module: str, workers: int, extra_env: dict[str, str], *more: str) -> dict:
        port = free_port()
        flags = ["--workers", str(workers), "--log-level", "warning", "--no-access-log", *more]
        process = self._spawn(
            [str(self.default / "uvicorn"), f"{module}:app", "--port", str(port), *flags],
            cwd=self.work,
            env={**self.env, **extra_env},
        )
        return {"process": process, "url": f"http://127.0.0.1:{port}/predict", "port": port}

    def start(self, workers: int, row: dict, rows: list[dict], *, single_only: bool) -> dict[str, dict[str, Any]]:
        """The servers at ``workers`` workers (``single_only``: also those measured at one worker only)."""
        work, env = self.work, self.env
        records = lambda body: json.dumps({"records": body})  # noqa: E731
        predictions: Callable[[dict], list] = lambda body: body["predictions"]  # noqa: E731
        servers: dict[str, dict[str, Any]] = {}
        port = free_port()
        command = [str(self.default / "python"), "-m", "harbourmaster", "serve", "--env", "dev", "--port", str(port)]
        servers[HM] = {
            "process": self._spawn([*command, "--workers", str(workers)], env=env),
            "base": f"http://127.0.0.1:{port}",
            "url": f"http://127.0.0.1:{port}/v1/projects/bench/predict",
            "ready": f"http://127.0.0.1:{port}/v2/models/bench/ready",
            "project": "bench",
        }
        if single_only:
            port = free_port()
            (work / "sklearn_replica.py").write_text(SKLEARN_REPLICA)
            servers[HM_SK] = {
                "process": self._spawn(
                    [str(self.default / "python"), "sklearn_replica.py", str(port)], cwd=work, env=env
                ),
                "base": f"http://127.0.0.1:{port}",
                "url": f"http://127.0.0.1:{port}/v1/projects/bench-sk/predict",
                "ready": f"http://127.0.0.1:{port}/v2/models/bench-sk/ready",
                "project": "bench-sk",
            }
        for server in (servers[HM], servers.get(HM_SK)):
            if server is not None:
                server.update(one=json.dumps(row), many=records(rows), answers=predictions)
        model_env = {"BENCH_MODEL": str(work / "model-arrays.pkl"), "BENCH_COLUMNS": str(work / "columns.json")}
        onnx_env = {"BENCH_ONNX": str(work / "bench.onnx"), "BENCH_COLUMNS": str(work / "columns.json")}
        for name, module, extra in ((FAST_ORT, "fastapi_onnx", onnx_env), (FAST_SK, "fastapi_sklearn", model_env)):
            server = self._uvicorn(name, module, workers, extra)
            server.update(ready=server["url"].replace("/predict", "/docs"), one=records([row]), many=records(rows))
            servers[name] = {**server, "answers": predictions}
        if not self.args.skip_mlflow:
            port = free_port()
            mlflow = [str(PEERS_ENV / "bin" / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model")]
            mlflow += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
            servers[MLFLOW] = {
                "process": self._spawn(mlflow, env={**env, "PATH": f"{PEERS_ENV / 'bin'}:{env.get('PATH', '')}"}),
                "url": f"http://127.0.0.1:{port}/invocations",
                "ready": f"http://127.0.0.1:{port}/ping",
                "one": json.dumps({"dataframe_records": [row]}),
                "many": json.dumps({"dataframe_records": rows}),
                "answers": predictions,
            }
        if single_only and not self.args.skip_mlserver:
            port = free_port()
            folder = work / "mlserver"
            settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
            (folder / "settings.json").write_text(json.dumps(settings))
            columns = list(row)

            def tensor(body: list[dict]) -> str:
                data = [record[c] for record in body for c in columns]
                shape = [len(body), len(columns)]
                return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": "FP64", "data": data}]})

            servers[MLSERVER] = {
                "process": self._spawn(
                    [str(MLSERVER_ENV / "bin" / "mlserver"), "start", str(folder)], env=env, cwd=work
                ),  # cwd: MLServer writes its .metrics folder there
                "url": f"http://127.0.0.1:{port}/v2/models/bench/infer",
                "ready": f"http://127.0.0.1:{port}/v2/models/bench/ready",
                "one": tensor([row]),
                "many": tensor(rows),
                "answers": lambda body: body["outputs"][0]["data"],
            }
        if single_only:
            server = self._uvicorn(CONSTANT, "constant_app", workers, {}, "--lifespan", "off")
            server.update(ready=None, one=records([row]), many=records(rows), answers=None)
            servers[CONSTANT] = server
        for server in servers.values():
            if server["ready"] is None:
                wait_port(server["port"], server["process"])
            else:
                wait_ready(server["ready"], server["process"])
        self.check_agreement(servers, len(rows))
        return servers

    def check_agreement(self, servers: dict[str, dict[str, Any]], rows: int) -> None:
        """Every model server must give the same labels on the 100-row body before anything is measured."""
        answers = {}
        for name, server in servers.items():
            if server["answers"] is None:
                continue
            response = httpx.post(
                server["url"], content=server["many"], headers={"content-type": "application/json"}, timeout=60
            )
            response.raise_for_status()
            answers[name] = [int(v) for v in server["answers"](response.json())]
            self.answered(server, rows, 0)
        reference = next(iter(answers.values()))
        disagree = {name for name, a in answers.items() if a != reference}
        assert not disagree, f"servers disagree on the 100 rows: {sorted(disagree)} vs {next(iter(answers))}"

    def answered(self, server: dict[str, Any], rows: int, in_flight: int) -> None:
        project = server.get("project")
        if project:
            done, flight = self.expected.get(project, (0, 0))
            self.expected[project] = (done + rows, flight + in_flight)

    def stop(self) -> None:
        for process in self.processes:
            stop(process)
        self.processes = []

    def measure(
        self, key: tuple[str, ...], server: dict[str, Any], body: str, rows: int, connections: int, *, close=False
    ) -> None:
        label = " / ".join(key)
        print(f"{label:72} ...", end=" ", flush=True)
        for duration, keep in ((2, False), (self.args.duration, True)):  # warm-up, then the measurement
            result = run_wrk(self.wrk, server["url"], body, connections, duration, self.work, close=close)
            self.answered(server, (result["requests"] - result["errors"]) * rows, connections * rows)
            if keep:
                self.results.setdefault(key, []).append(result)
        if server.get("project"):
            self.reconcile(server)
        note = f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""
        print(f"{result['rps']:8.0f} req/s  p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms{note}", flush=True)

    def reconcile(self, server: dict[str, Any], timeout: float = 60.0) -> None:
        """Drain the replica's capture queue, then compare the prediction log with the rows answered."""
        project = server["project"]
        answered, in_flight = self.expected[project]
        deadline = time.monotonic() + timeout
        logged, previous = -1, -2
        while time.monotonic() < deadline:
            capture = httpx.get(server["base"] + "/v1/status", timeout=10).json().get("capture", {})
            if capture.get("queue", 0) == 0 and not capture.get("pending", 0):
                done = subprocess.run(
                    [str(self.default / "python"), "-c", COUNT_LOG, project],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                previous, logged = logged, json.loads(done.stdout)[project]
                if logged >= answered and logged == previous:
                    break
            time.sleep(1.0)
        ok = answered <= logged <= answered + in_flight
        self.checks.append({"project": project, "answered": answered, "in_flight": in_flight, "logged": logged})
        if not ok:
            print(f"\n  prediction log: {logged} rows for {answered} answered (+ up to {in_flight} in flight)")


def prepare(work: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Fit the same pipeline for every server, register and deploy it, write the peers' model files."""
    default = str(DEFAULT_ENV / "bin" / "python")
    setup = FIT + textwrap.dedent(
        f"""
        import json
        from skl2onnx import to_onnx
        from harbourmaster.client import Client
        from harbourmaster.services.actors import Actor
        from harbourmaster.services.platform import Platform
        work = {str(work)!r}
        pickle.dump(arrays, open(work + "/model-arrays.pkl", "wb"))
        json.dump([str(c) for c in data.data.columns], open(work + "/columns.json", "w"))
        graph = to_onnx(arrays, data.data.to_numpy()[:1], options={{"zipmap": False}})
        open(work + "/bench.onnx", "wb").write(graph.SerializeToString())
        engines = {{}}
        with Client() as hm:
            for project in ("bench", "bench-mb", "bench-sk"):
                detail = hm.register(project, pipeline, data.frame, target="target", metrics={{"accuracy": 1.0}})
                engines[project] = detail.lineage.get("serving")
        platform = Platform()
        owner = Actor.local_owner()
        for project in ("bench", "bench-mb", "bench-sk"):
            platform.deployments.deploy(owner, project, 1, "dev")
        platform.deployments.set_options(owner, "bench-mb", "dev", {{"microbatch": {{"enabled": True}}}})
        sla = platform.environments.get("dev").config.sla
        options = platform.deployments.get(owner, "bench-mb", "dev").options
        found = {{"p99_ms": sla.p99_ms, "microbatch": options.get("microbatch"), "registered": engines}}
        json.dump(found, open(work + "/dev.json", "w"))
        platform.close()
        """
    )
    subprocess.run([default, "-c", setup], env=env, check=True)
    if not args.skip_mlflow:
        save = "import mlflow.sklearn\n"
        save += (
            f"mlflow.sklearn.save_model(pipeline, {str(work / 'mlflow-model')!r}, serialization_format='cloudpickle')"
        )
        subprocess.run([str(PEERS_ENV / "bin" / "python"), "-c", FIT + save], check=True, capture_output=True)
    if not args.skip_mlserver:
        folder = work / "mlserver"
        folder.mkdir()
        save = f"import joblib\njoblib.dump(arrays, {str(folder / 'model.joblib')!r})"
        subprocess.run([str(MLSERVER_ENV / "bin" / "python"), "-c", FIT + save], check=True, capture_output=True)
        model_settings = {
            "name": "bench",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
    (work / "fastapi_sklearn.py").write_text(FASTAPI_SKLEARN)
    (work / "fastapi_onnx.py").write_text(FASTAPI_ONNX)
    (work / "constant_app.py").write_text(CONSTANT_APP)
    return json.loads((work / "dev.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the main load (default 3)")
    parser.add_argument(
        "--multi-workers", type=int, default=0, help="also measure at N workers per server (default 0: skip)"
    )
    parser.add_argument("--fresh", action="store_true", help="recreate the virtual environments first")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    wrk = ensure_wrk()
    default = ensure_default(args.fresh)
    found = {"Harbourmaster (pip install -e .)": versions(default, VERSIONS["default"])}
    sklearn_version = found["Harbourmaster (pip install -e .)"]["scikit-learn"]
    if not args.skip_mlflow:
        found["mlflow"] = versions(ensure_peers(args.fresh, sklearn_version), VERSIONS["peers"])
    if not args.skip_mlserver:
        found["MLServer"] = versions(ensure_mlserver(args.fresh, sklearn_version), VERSIONS["mlserver"])
    work = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    load_before = os.getloadavg()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(work / "hm-home")
    bench = Bench(args, wrk, work, env)
    try:
        dev = prepare(work, env, args)
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer(as_frame=True)
        row = {k: float(v) for k, v in data.data.iloc[0].items()}
        rows = [{k: float(v) for k, v in r.items()} for r in data.data.head(100).to_dict(orient="records")]

        servers = bench.start(1, row, rows, single_only=True)
        metadata = {
            name: httpx.get(servers[name]["base"] + f"/v2/models/{servers[name]['project']}").json()["parameters"]
            for name in (HM, HM_SK)
        }
        label, size, connections = MAIN
        for round_number in range(args.rounds):  # interleaved: every server once per round
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name]
                bench.measure(("main", name, label, str(connections)), server, server["one"], 1, connections)
        for label, size, connections in OTHER_LOADS:
            for name, server in servers.items():
                body = server["one"] if size == 1 else server["many"]
                bench.measure(("other", name, label, str(connections)), server, body, size, connections)
        ours = servers[HM]
        for project, key in (("bench", "off"), ("bench-mb", "on")):
            mb = {**ours, "url": ours["base"] + f"/v1/projects/{project}/predict", "project": project}
            bench.measure(("microbatch", key, "1 row", "32"), mb, ours["one"], 1, 32)
        bench.stop()
        if args.multi_workers > 0:
            servers = bench.start(args.multi_workers, row, rows, single_only=False)
            for name, server in servers.items():
                for connections, close in MULTI_LOADS:
                    key = ("multi", name, "new connection per request" if close else "keep-alive", str(connections))
                    bench.measure(key, server, server["one"], 1, connections, close=close)
            bench.stop()
        context = {
            "dev": dev,
            "metadata": metadata,
            "versions": found,
            "loads": (load_before, os.getloadavg()),
            "checks": bench.checks,
        }
        report = render(bench.results, args, context)
        print("\n" + report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        # Hand-written analysis below NOTES_MARKER survives a re-run (re-read it against the new figures).
        previous = args.output.read_text() if args.output.exists() else ""
        if NOTES_MARKER in previous:
            report += "\n" + previous[previous.index(NOTES_MARKER) :]
        args.output.write_text(report)
        print(f"written to {args.output}")
    finally:
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


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _median(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def render(results: dict, args: argparse.Namespace, context: dict[str, Any]) -> str:
    before, after = context["loads"]
    dev, metadata = context["dev"], context["metadata"]
    engines = ", ".join(
        f"{name}: {meta.get('engine')}" + (f" ({meta['engine_reason']})" if meta.get("engine_reason") else "")
        for name, meta in metadata.items()
    )
    lines = [
        "# Serving benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}. wrk on 127.0.0.1, {args.duration} s per "
        "measurement after a 2 s warm-up, **sharing the CPUs with the servers and with other work on the "
        f"machine**: load average {before[0]:.1f} before the run, {after[0]:.1f} after. Pipeline: scikit-learn "
        "breast-cancer, StandardScaler + LogisticRegression, 30 numeric features, fitted once per environment "
        "(the servers must return the same 100 labels before anything is measured). Harbourmaster runs with "
        f"validation, prediction capture (Parquet) and metrics on; engines as the replicas report them: {engines}.",
        "",
        "Reproduce: `python benchmarks/serving/run.py` (options: `--duration 30`, `--rounds 5`, `--fresh` to "
        "recreate the virtual environments, `--multi-workers 2`, `--skip-mlflow`, `--skip-mlserver`).",
        "",
        "Versions, read from each server's own virtual environment:",
        "",
    ]
    for name, found in context["versions"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    label, _size, connections = MAIN
    main = {key[1]: runs for key, runs in results.items() if key[0] == "main"}
    lines += [
        "",
        f"## The issue's load: {label} requests, {connections} connections, 1 worker, {args.rounds} interleaved rounds",
        "",
        "| server | req/s (median) | req/s (min - max) | p50 ms | p99 ms (median) | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in main.items():
        rps = [run["rps"] for run in runs]
        lines.append(
            f"| {name} | {statistics.median(rps):.0f} | {min(rps):.0f} - {max(rps):.0f} | "
            f"{_median(runs, 'p50'):.2f} | {_median(runs, 'p99'):.2f} | {sum(r['errors'] for r in runs)} |"
        )
    ours = _median(main[HM], "rps") if HM in main else float("nan")
    targets = [(FAST_ORT, 1.0), (FAST_SK, 3.0), (MLFLOW, 10.0), (MLSERVER, 10.0), (CONSTANT, 1 / 3)]
    lines += ["", "| target (Harbourmaster, default install) | measured | met |", "|---|---:|---|"]
    for peer, bound in targets:
        if peer in main:
            value = _ratio(ours, _median(main[peer], "rps"))
            text = f">= {bound:.1f}x {peer}" if bound >= 1 else f">= 1/3 of {peer}"
            lines.append(f"| {text} | {value:.2f}x | {'yes' if value >= bound else '**no**'} |")
    if HM_SK in main and FAST_SK in main:
        value = _ratio(_median(main[HM_SK], "rps"), _median(main[FAST_SK], "rps"))
        lines.append(f"| {HM_SK}: >= 1.0x {FAST_SK} | {value:.2f}x | {'yes' if value >= 1 else '**no**'} |")
    lines += [
        "",
        "## Other loads (1 worker, one measurement each)",
        "",
        "| load | connections | server | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for key, runs in results.items():
        if key[0] == "other":
            r = runs[0]
            lines.append(
                f"| {key[2]} | {key[3]} | {key[1]} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |"
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
        for key, r in (("off", off[0]), ("on", on[0])):
            within = "yes" if sla and r["p99"] <= sla else "no" if sla else "no SLA set"
            lines.append(f"| {key} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {within} |")
    multi = [key for key in results if key[0] == "multi"]
    if multi:
        lines += [
            "",
            f"## {args.multi_workers} workers per server (1-row requests, one measurement each)",
            "",
            "| connections | server | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for key in multi:
            r = results[key][0]
            lines.append(
                f"| {key[3]}, {key[2]} | {key[1]} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['errors']} | {r['socket_errors'] or '-'} |"
            )
    checks = context["checks"]
    bad = [c for c in checks if not c["answered"] <= c["logged"] <= c["answered"] + c["in_flight"]]
    last: dict[str, dict[str, Any]] = {}
    for check in checks:
        last[check["project"]] = check
    lines += [
        "",
        "## Prediction log against answered requests",
        "",
        f"After each of the {len(checks)} Harbourmaster measurements the capture queue was drained and the rows in "
        "the prediction log were counted: every answered row must be there, plus at most the rows of requests "
        "still in flight when wrk stopped (answered by the server, not counted by wrk). "
        + ("All checks passed." if not bad else f"**{len(bad)} check(s) failed**: {bad}."),
        "",
        "| project | rows answered (counted by wrk) | rows possibly in flight | rows logged |",
        "|---|---:|---:|---:|",
    ]
    for project, check in last.items():
        lines.append(f"| {project} | {check['answered']} | {check['in_flight']} | {check['logged']} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
