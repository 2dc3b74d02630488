"""The load generator's own ceiling: the rate `harbourmaster loadtest` can offer, open loop, against a
server that costs nothing (a raw ASGI app answering a constant under uvicorn with uvloop + httptools, one
worker, on loopback, in a process of its own).

One command:  python benchmarks/loadtest/run.py [--rates 1000,2000,3500,5000,7000,10000] [--duration 3]
                                                 [--connections 64] [--skip-wrk] [--skip-httpx]

For each rate: requests offered and answered, achieved throughput, p50/p99/max from the intended send
times, and the generator's own figures (sends the scheduler made more than 10 ms late; requests that
waited more than 10 ms for a free connection). A rate is *kept* when at least 99% of the requests were
answered, throughput is within 2% of the rate and fewer than 1% of the sends were late.

Checks of the instrument itself: (1) wrk (closed loop, 8 connections) against the same server gives the
server's own ceiling, which an open-loop generator cannot exceed; (2) the same open-loop schedule driven
by httpx.AsyncClient shows why the generator speaks raw HTTP/1.1. The load average is printed before and
after: the machine may be shared. Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host_platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from servers import free_port, wait_port  # noqa: E402

from harbourmaster.loadgen import Plan, encode_post, run_open_loop  # noqa: E402

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
BODY = b'{"records": [{"x1": 0.5, "x2": 1.5}]}'


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    (work / "constant_app.py").write_text(CONSTANT_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "constant_app:app", "--port", str(port), "--log-level", "warning"]
    command += ["--no-access-log", "--lifespan", "off", "--loop", "uvloop", "--http", "httptools"]
    process = subprocess.Popen(command, cwd=work)
    try:
        wait_port(port, process, timeout=20)
    except RuntimeError as error:
        process.kill()
        raise SystemExit(f"the constant server did not start: {error}") from None
    return process, port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))]


def measure(port: int, rate: float, duration: float, connections: int) -> dict:
    host, port, raw = encode_post(f"http://127.0.0.1:{port}/predict", BODY)
    run = run_open_loop(Plan(host, port, [raw], rate, duration, connections=connections, grace=5.0))
    answered = [o.latency * 1000 for o in run.outcomes if o.latency is not None and o.status == 200]
    offered = len(run.outcomes)
    throughput = len(answered) / run.elapsed
    kept = len(answered) >= 0.99 * offered and throughput >= 0.98 * rate and run.late_dispatches < 0.01 * offered
    return {
        "rate": rate,
        "offered": offered,
        "answered": len(answered),
        "throughput": throughput,
        "p50": percentile(answered, 0.5) if answered else float("nan"),
        "p99": percentile(answered, 0.99) if answered else float("nan"),
        "max": max(answered) if answered else float("nan"),
        "late": run.late_dispatches,
        "waited": run.waited,
        "lag": run.max_dispatch_lag_ms,
        "connections": run.connections_used,
        "kept": kept,
    }


async def _httpx_open_loop(
    url: str, rate: float, duration: float, connections: int
) -> tuple[int, int, float, int, int]:
    """The same open-loop schedule (queue + workers) driven by httpx.AsyncClient."""
    import httpx

    count = round(rate * duration)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[int] = asyncio.Queue()
    answered, late, errors = [0], [0], [0]
    start = loop.time() + 0.05
    last = [start]
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            while True:
                await queue.get()
                try:
                    response = await client.post(url, content=BODY, headers={"content-type": "application/json"})
                except httpx.HTTPError:
                    errors[0] += 1
                    continue
                if response.status_code == 200:
                    answered[0] += 1
                last[0] = loop.time()

        workers = [asyncio.ensure_future(worker()) for _ in range(connections)]
        for i in range(count):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > 0.01:
                late[0] += 1
            queue.put_nowait(i)
        deadline = loop.time() + 5
        while answered[0] + errors[0] < count and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return count, answered[0], last[0] - start, late[0], errors[0]


def httpx_measure(port: int, rate: float, duration: float, connections: int) -> dict:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        count, answered, elapsed, late, errors = runner.run(
            _httpx_open_loop(f"http://127.0.0.1:{port}/predict", rate, duration, connections)
        )
    throughput = answered / elapsed
    return {
        "rate": rate,
        "offered": count,
        "answered": answered,
        "throughput": throughput,
        "late": late,
        "errors": errors,
    }


def wrk(port: int, duration: float) -> dict | None:
    if not shutil.which("wrk"):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {BODY.decode()!r}\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
    command = ["wrk", "-t1", "-c8", f"-d{max(1, int(duration))}s", "--latency", "-s", script.name]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}/predict"], capture_output=True, text=True, check=True)
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out.stdout)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else float("nan")
    return {"rps": rps, "p99": float(p99.group(1)) * scale if p99 else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,2000,3500,5000,7000,10000")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-wrk", action="store_true")
    parser.add_argument("--skip-httpx", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    before = load()
    with tempfile.TemporaryDirectory() as folder:
        server, port = start_server(Path(folder))
        try:
            run_open_loop(Plan("127.0.0.1", port, [encode_post("http://127.0.0.1/x", BODY)[2]], 500, 1.0))  # warm-up
            rows = []
            for rate in rates:
                rows.append(measure(port, rate, args.duration, args.connections))
                print(rows[-1], file=sys.stderr)
            client = []
            if not args.skip_httpx:
                client = [httpx_measure(port, r, args.duration, args.connections) for r in rates[:4]]
            for row in client:
                print("httpx", row, file=sys.stderr)
            ceiling = None if args.skip_wrk else wrk(port, args.duration)
        finally:
            server.terminate()
            server.wait(10)
    after = load()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{host_platform.machine()}, {os.cpu_count()} CPUs, Python {host_platform.python_version()}"
    print(
        f"Measured {now} on {machine}; "
        f"load average (1, 5, 15 min) {before} before, {after} after. "
        f"`python benchmarks/loadtest/run.py --rates {args.rates} --duration {args.duration:g} "
        f"--connections {args.connections}`\n"
    )
    print(
        "| offered rate (req/s) | requests | answered | achieved req/s | p50 ms | p99 ms | max ms "
        "| late sends | waited for a connection | connections | kept |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['rate']:.0f} | {r['offered']} | {r['answered']} | {r['throughput']:.0f} | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {r['max']:.1f} | {r['late']} | {r['waited']} | {r['connections']} "
            f"| {'yes' if r['kept'] else '**no**'} |"
        )
    if client:
        print("\nThe same open-loop schedule driven by httpx.AsyncClient (same connections):\n")
        print("| offered rate (req/s) | requests | answered | errors | achieved req/s | late sends |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in client:
            print(
                f"| {r['rate']:.0f} | {r['offered']} | {r['answered']} | {r['errors']} | {r['throughput']:.0f} "
                f"| {r['late']} |"
            )
    if ceiling:
        print(
            f"\nwrk (closed loop, 1 thread, 8 connections, {args.duration:g} s) against the same server: "
            f"{ceiling['rps']:.0f} req/s, p99 {ceiling['p99']:.2f} ms."
        )
    kept = [r["rate"] for r in rows if r["kept"]]
    print(f"\nHighest rate kept: {max(kept):.0f} req/s." if kept else "\nNo rate kept.")


if __name__ == "__main__":
    main()
