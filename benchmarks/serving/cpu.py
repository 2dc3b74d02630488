"""CPU time per request of a replica and of its bare FastAPI peers, on a shared machine.

req/s on a machine shared with other work is noise; the CPU time the server process spends per
answered request (utime + stime from /proc/<pid>/stat, all threads) is much steadier. Every server
runs the serving benchmark's pipeline (breast-cancer StandardScaler + LogisticRegression) under wrk
with 1-row requests and 8 connections, in interleaved rounds:

- ``onnx`` engine: the replica (exact ONNX copy) against FastAPI + onnxruntime on the same graph;
- ``sklearn`` engine: the replica with ONNX turned off against FastAPI calling ``predict`` on a numpy row.

    python benchmarks/serving/cpu.py [--rounds 3] [--duration 3] [--connections 8] [--engines onnx,sklearn]
                                     [--compare OTHER_CHECKOUT]

``--compare`` also runs the replicas from another checkout's ``src`` (e.g. a worktree of main), in the same
interleaved rounds: a before/after that the machine's load moves alike.

Runs in the current interpreter's environment (the replica from this checkout, uvicorn from the same
environment); Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import FASTAPI_ONNX, FASTAPI_SKLEARN, FIT, SKLEARN_REPLICA, free_port, run_wrk, wait_ready

ROOT = Path(__file__).resolve().parents[2]
# engine -> (the replica, its bare FastAPI peer running the same model the same way)
PAIRS = {
    "onnx": ("Harbourmaster", "FastAPI + onnxruntime"),
    "sklearn": ("Harbourmaster, scikit-learn engine", "FastAPI + scikit-learn"),
}
TICKS = os.sysconf("SC_CLK_TCK")

SETUP = FIT + textwrap.dedent(
    """
    import json
    import pickle
    from skl2onnx import to_onnx
    from harbourmaster.client import Client
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform
    work = sys.argv[1]
    json.dump([str(c) for c in data.data.columns], open(work + "/columns.json", "w"))
    graph = to_onnx(arrays, data.data.to_numpy()[:1], options={"zipmap": False})
    open(work + "/bench.onnx", "wb").write(graph.SerializeToString())
    pickle.dump(arrays, open(work + "/model-arrays.pkl", "wb"))
    json.dump({k: float(v) for k, v in data.data.iloc[0].items()}, open(work + "/row.json", "w"))
    with Client() as hm:
        for project in ("bench", "bench-sk"):
            hm.register(project, pipeline, data.frame, target="target", metrics={"accuracy": 1.0})
    platform = Platform()
    for project in ("bench", "bench-sk"):
        platform.deployments.deploy(Actor.local_owner(), project, 1, "dev")
    platform.close()
    """
)


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def counters(pid: int) -> tuple[float, int, int, float]:
    """CPU seconds (utime + stime, all threads), system calls (read + write), voluntary context switches,
    and the CPU seconds of the main thread (the event loop's)."""
    cpu = _cpu(Path(f"/proc/{pid}/stat"))
    loop = _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    switches = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        switches += int(text.split("voluntary_ctxt_switches:")[1].split()[0])
    return cpu, int(io["syscr"]) + int(io["syscw"]), switches, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--engines", default="onnx,sklearn", help="comma-separated: onnx, sklearn")
    parser.add_argument("--compare", type=Path, help="another checkout whose replicas run in the same rounds")
    args = parser.parse_args()
    if args.compare is not None and not (args.compare / "src" / "harbourmaster").is_dir():
        sys.exit(f"--compare {args.compare}: no src/harbourmaster there (give the root of a checkout)")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or set(engines) - set(PAIRS):
        sys.exit(f"--engines takes a comma-separated list of: {', '.join(PAIRS)}")
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="hm-cpu-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(work / "hm-home")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    processes: list[subprocess.Popen] = []

    def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        processes.append(process)
        return process

    try:
        subprocess.run([sys.executable, "-c", "import sys\n" + SETUP, str(work)], env=env, check=True)
        (work / "fastapi_onnx.py").write_text(FASTAPI_ONNX)
        (work / "fastapi_sklearn.py").write_text(FASTAPI_SKLEARN)
        (work / "sklearn_replica.py").write_text(SKLEARN_REPLICA)
        row = json.loads((work / "row.json").read_text())
        files = {"BENCH_COLUMNS": str(work / "columns.json")}
        files.update(BENCH_ONNX=str(work / "bench.onnx"), BENCH_MODEL=str(work / "model-arrays.pkl"))
        servers: dict[str, tuple[subprocess.Popen, str, str, Any]] = {}
        ready: list[tuple[str, subprocess.Popen]] = []
        checkouts = [("", env)]
        if args.compare is not None:
            other = {**env, "PYTHONPATH": env["PYTHONPATH"].replace(str(ROOT / "src"), str(args.compare / "src"), 1)}
            checkouts.append((f" @ {args.compare.name}", other))
        for engine in engines:
            replica_name, peer_name = PAIRS[engine]
            for suffix, replica_env in checkouts:
                port = free_port()
                if engine == "onnx":
                    command = [sys.executable, "-m", "harbourmaster", "serve", "--env", "dev", "--port", str(port)]
                    process, project = spawn(command, env=replica_env), "bench"
                else:
                    command = [sys.executable, "sklearn_replica.py", str(port)]
                    process, project = spawn(command, env=replica_env, cwd=work), "bench-sk"
                base = f"http://127.0.0.1:{port}"
                servers[replica_name + suffix] = (process, base, f"/v1/projects/{project}/predict", row)
                ready.append((f"{base}/v2/models/{project}/ready", process))
            port = free_port()
            module = "fastapi_onnx" if engine == "onnx" else "fastapi_sklearn"
            peer = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level", "warning"]
            process = spawn([*peer, "--no-access-log"], env={**env, **files}, cwd=work)
            servers[peer_name] = (process, f"http://127.0.0.1:{port}", "/predict", {"records": [row]})
            ready.append((f"http://127.0.0.1:{port}/docs", process))
        for url, process in ready:
            wait_ready(url, process)
        results: dict[str, list[float]] = {name: [] for name in servers}
        kernel: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        for _process, base, path, body in servers.values():  # warm-up
            run_wrk(wrk, base + path, json.dumps(body), args.connections, 1, work)
        for round_number in range(args.rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:
                process, base, path, body = servers[name]
                before = counters(process.pid)
                found = run_wrk(wrk, base + path, json.dumps(body), args.connections, args.duration, work)
                time.sleep(0.3)  # the last answers' capture
                after = counters(process.pid)
                assert found["errors"] == 0 and found["requests"] > 0, found
                n = found["requests"]
                results[name].append((after[0] - before[0]) / n * 1e6)
                kernel[name].append(
                    ((after[1] - before[1]) / n, (after[2] - before[2]) / n, (after[3] - before[3]) / n * 1e6)
                )
                print(f"round {round_number + 1} {name}: {results[name][-1]:.0f} µs/request, {found['rps']:.0f} req/s")
        print(
            "\n| server | CPU µs per request (median) | runs | event-loop thread µs | system calls / request "
            "| voluntary switches / request |"
        )
        print("|---|---:|---|---:|---:|---:|")
        for name, values in results.items():
            calls, switches, loop = (statistics.median(k[i] for k in kernel[name]) for i in range(3))
            runs = ", ".join(f"{v:.0f}" for v in values)
            line = f"| {name} | {statistics.median(values):.0f} | {runs} | {loop:.0f} | {calls:.2f} | {switches:.2f} |"
            print(line)
        print()
        for engine in engines:
            replica_name, peer_name = PAIRS[engine]
            for suffix, _env in checkouts:
                ratio = statistics.median(results[replica_name + suffix]) / statistics.median(results[peer_name])
                print(f"{replica_name + suffix} / {peer_name}, CPU per request: {ratio:.2f}x")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
