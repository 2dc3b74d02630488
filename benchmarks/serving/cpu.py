"""CPU time per request of a replica and of the FastAPI + onnxruntime peer, on a shared machine.

req/s on a machine shared with other work is noise; the CPU time the server process spends per
answered request (utime + stime from /proc/<pid>/stat, all threads) is much steadier. Both servers
run the same ONNX graph of the serving benchmark (breast-cancer StandardScaler + LogisticRegression),
under wrk with 1-row requests and 8 connections, in interleaved rounds.

    python benchmarks/serving/cpu.py [--rounds 3] [--duration 3] [--connections 8]

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import FASTAPI_ONNX, FIT, free_port, run_wrk, wait_ready

ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")

SETUP = FIT + textwrap.dedent(
    """
    import json
    from skl2onnx import to_onnx
    from harbourmaster.client import Client
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform
    work = sys.argv[1]
    json.dump([str(c) for c in data.data.columns], open(work + "/columns.json", "w"))
    graph = to_onnx(arrays, data.data.to_numpy()[:1], options={"zipmap": False})
    open(work + "/bench.onnx", "wb").write(graph.SerializeToString())
    json.dump({k: float(v) for k, v in data.data.iloc[0].items()}, open(work + "/row.json", "w"))
    with Client() as hm:
        hm.register("bench", pipeline, data.frame, target="target", metrics={"accuracy": 1.0})
    platform = Platform()
    platform.deployments.deploy(Actor.local_owner(), "bench", 1, "dev")
    platform.close()
    """
)


def counters(pid: int) -> tuple[float, int, int]:
    """CPU seconds (utime + stime, all threads), system calls (read + write), voluntary context switches."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    switches = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        switches += int(text.split("voluntary_ctxt_switches:")[1].split()[0])
    return cpu, int(io["syscr"]) + int(io["syscw"]), switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="hm-cpu-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(work / "hm-home")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    processes: list[subprocess.Popen] = []
    try:
        subprocess.run([sys.executable, "-c", "import sys\n" + SETUP, str(work)], env=env, check=True)
        (work / "fastapi_onnx.py").write_text(FASTAPI_ONNX)
        row = json.loads((work / "row.json").read_text())
        servers = {}
        port = free_port()
        hm = [sys.executable, "-m", "harbourmaster", "serve", "--env", "dev", "--port", str(port)]
        processes.append(subprocess.Popen(hm, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers["Harbourmaster"] = (processes[-1], f"http://127.0.0.1:{port}", "/v1/projects/bench/predict", row)
        port = free_port()
        peer = [sys.executable, "-m", "uvicorn", "fastapi_onnx:app", "--port", str(port), "--log-level", "warning"]
        peer_env = {**env, "BENCH_ONNX": str(work / "bench.onnx"), "BENCH_COLUMNS": str(work / "columns.json")}
        processes.append(subprocess.Popen([*peer, "--no-access-log"], env=peer_env, cwd=work))
        servers["FastAPI + onnxruntime"] = (processes[-1], f"http://127.0.0.1:{port}", "/predict", {"records": [row]})
        wait_ready(servers["Harbourmaster"][1] + "/v2/models/bench/ready", servers["Harbourmaster"][0])
        wait_ready(servers["FastAPI + onnxruntime"][1] + "/docs", servers["FastAPI + onnxruntime"][0])
        results: dict[str, list[float]] = {name: [] for name in servers}
        kernel: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
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
                kernel[name].append(((after[1] - before[1]) / n, (after[2] - before[2]) / n))
                print(f"round {round_number + 1} {name}: {results[name][-1]:.0f} µs/request, {found['rps']:.0f} req/s")
        hm_us, peer_us = (statistics.median(v) for v in results.values())
        print(
            "\n| server | CPU µs per request (median) | runs | system calls / request | voluntary switches / request |"
        )
        print("|---|---:|---|---:|---:|")
        for name, values in results.items():
            calls = statistics.median(k[0] for k in kernel[name])
            switches = statistics.median(k[1] for k in kernel[name])
            runs = ", ".join(f"{v:.0f}" for v in values)
            print(f"| {name} | {statistics.median(values):.0f} | {runs} | {calls:.2f} | {switches:.2f} |")
        print(f"\nHarbourmaster / peer CPU per request: {hm_us / peer_us:.2f}x")
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
