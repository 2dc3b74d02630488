"""Drift benchmark: Harbourmaster's drift report against Evidently's DataDriftPreset and NannyML's
univariate drift calculator, on the same reference and current data, each in its own process.

Data (seeded): n rows each of reference and current x 20 columns: 15 numeric N(0, 1), 5 categorical
of 10 levels; in the current data 5 numeric columns are shifted by 0.1 sd and one categorical column
is re-weighted. Every tool runs in a fresh process on the same Parquet files and reports the wall time
of the computation and the peak resident memory above what the loaded data already takes; the
per-column verdicts are compared with Evidently's (same tests: with more than 1000 reference rows both
choose normalised Wasserstein for numeric and Jensen-Shannon for categorical columns, thresholds 0.1).
The last runs time drift over a window read from a prediction log of n rows against a 5000-row
reference sample, the size a bundle keeps: once from files with inputs as JSON text (what replicas
wrote before typed columns) and once from typed files written by the replicas' own capture encoder
(one 1-row request per row, 10k-row files).

Usage (the full run; the virtual environments are created under /tmp on first use)::

    python benchmarks/drift/run.py                       # n = 10k, 100k, 1M
    python benchmarks/drift/run.py --sizes 10000,100000  # a quick run
    python benchmarks/drift/run.py --skip-nannyml --fresh

Harbourmaster runs in the interpreter that runs this script (the project's environment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
CACHE = Path("/tmp/hm-bench-drift")
VENVS = {
    "evidently": (Path("/tmp/hm-bench-evidently"), ["evidently", "pandas<3"]),
    "nannyml": (
        Path("/tmp/hm-bench-nannyml"),
        ["nannyml", "statsmodels"],
    ),  # nannyml imports statsmodels without requiring it
}
NUMERIC = [f"num_{i}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = NUMERIC[:5]
REWEIGHTED = CATEGORICAL[0]
LEVELS = [f"level_{i}" for i in range(10)]


def make_frame(rows: int, seed: int, *, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name in NUMERIC:
        values = rng.normal(0.0, 1.0, rows)
        data[name] = values + 0.1 if drifted and name in SHIFTED else values
    uniform = np.full(10, 0.1)
    skewed = np.array([0.3, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    for name in CATEGORICAL:
        weights = skewed if drifted and name == REWEIGHTED else uniform
        data[name] = rng.choice(LEVELS, rows, p=weights)
    return pd.DataFrame(data)


def data_files(rows: int) -> tuple[Path, Path]:
    folder = CACHE / "data"
    folder.mkdir(parents=True, exist_ok=True)
    reference, current = folder / f"reference-{rows}.parquet", folder / f"current-{rows}.parquet"
    if not reference.exists():
        make_frame(rows, 1, drifted=False).to_parquet(reference, index=False)
    if not current.exists():
        make_frame(rows, 2, drifted=True).to_parquet(current, index=False)
    return reference, current


def log_folder(rows: int) -> Path:
    """A prediction log of ``rows`` rows (files of at most 100k rows, inputs as JSON text)."""
    sys.path.insert(0, str(ROOT / "src"))
    import orjson

    from harbourmaster.store.artifacts import ArtifactStore
    from harbourmaster.store.prediction_log import PREDICTION_SCHEMA, partition

    folder = CACHE / f"log-{rows}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = ArtifactStore(f"file://{folder}")
    frame = make_frame(rows, 2, drifted=True)
    now = datetime.now(UTC)
    for start in range(0, rows, 100_000):
        chunk = frame.iloc[start : start + 100_000]
        records = chunk.to_dict(orient="records")
        count = len(records)
        table = pa.table(
            {
                "request_id": [f"r{start + i}" for i in range(count)],
                "row": pa.array([0] * count, pa.int32()),
                "ts": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
                "environment": ["bench"] * count,
                "project": ["drift"] * count,
                "version": pa.array([1] * count, pa.int32()),
                "path": ["champion"] * count,
                "reason": pa.array([None] * count, pa.string()),
                "status": pa.array([200] * count, pa.int16()),
                "latency_ms": [1.0] * count,
                "inputs": [orjson.dumps(record).decode() for record in records],
                "output": ["1"] * count,
                "probabilities": pa.array([None] * count, pa.string()),
                "shadow_version": pa.array([None] * count, pa.int32()),
                "shadow_output": pa.array([None] * count, pa.string()),
                "replica": ["bench"] * count,
            },
            schema=PREDICTION_SCHEMA,
        )
        key = f"{partition('predictions', 'bench', 'drift', now.date())}{start:09d}.parquet"
        path = Path(store.path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
    marker.write_text("ok")
    return folder


def typed_log_folder(rows: int) -> Path:
    """A prediction log of ``rows`` rows in typed columns, written by the capture writer's own encoder."""
    sys.path.insert(0, str(ROOT / "src"))
    from harbourmaster.core.log_layout import LogLayout
    from harbourmaster.serving.capture import Captured, encode
    from harbourmaster.store.artifacts import ArtifactStore
    from harbourmaster.store.prediction_log import prediction_key, table_bytes

    folder = CACHE / f"log-typed-{rows}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    columns = [{"name": n, "dtype": "float"} for n in NUMERIC]
    columns += [{"name": c, "dtype": "category", "categories": LEVELS} for c in CATEGORICAL]
    layout = LogLayout.from_schemas(1, {"columns": columns}, {"task": "classification", "classes": [0, 1]})
    store = ArtifactStore(f"file://{folder}")
    frame = make_frame(rows, 2, drifted=True)
    start_us = int(datetime.now(UTC).timestamp() * 1_000_000) - rows
    encoding = 0.0
    for start in range(0, rows, 10_000):
        records = frame.iloc[start : start + 10_000].to_dict(orient="records")
        entries = [
            Captured(start_us + start + i, f"r{start + i}", "drift", 1, "champion", None, 200, 1.0, [record], [1], None)
            for i, record in enumerate(records)
        ]
        began = time.perf_counter()
        tables = encode(entries, "bench", "bench", {("drift", 1): layout})
        encoding += time.perf_counter() - began
        for (project, day, version), table in tables.items():
            store.put_bytes(prediction_key("bench", project, day, f"{start:016x}", version), table_bytes(table))
    print(f"  typed log: {rows:,} rows encoded in {encoding:.2f} s ({encoding / rows * 1e6:.2f} us a row)")
    marker.write_text("ok")
    return folder


def venv_python(tool: str, fresh: bool) -> Path:
    path, packages = VENVS[tool]
    python = path / "bin" / "python"
    if fresh or not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        env = {**os.environ, "PIP_CONSTRAINT": ""}  # its own pins, not the project's
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True, env=env)
    return python


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    code = (
        "import sys, importlib.metadata as m\n"
        "for p in sys.argv[1:]:\n"
        "    try: print(p, m.version(p))\n"
        "    except m.PackageNotFoundError: print(p, 'absent')"
    )
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def run_worker(python: Path | str, tool: str, *args: Path, timeout: float = 3600) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")} if tool.startswith("harbourmaster") else dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")  # same footing for all
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), str(WORKER), tool, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:], "process_seconds": None}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def compare(ours: dict[str, bool], theirs: dict[str, bool]) -> list[str]:
    return sorted(c for c in ours if c in theirs and ours[c] != theirs[c])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument(
        "--log-rows", type=int, default=None, help="rows of the prediction-log run (default: the largest size; 0 skips)"
    )
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-nannyml", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="recreate the peers' virtual environments")
    parser.add_argument("--out", type=Path, default=CACHE / "results.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    tools: dict[str, Path | str] = {"harbourmaster": sys.executable}
    found: dict[str, dict[str, str]] = {
        "harbourmaster": versions(Path(sys.executable), ["numpy", "pandas", "scipy", "duckdb"])
    }
    for tool, skip in (("evidently", args.skip_evidently), ("nannyml", args.skip_nannyml)):
        if not skip:
            tools[tool] = venv_python(tool, args.fresh)
            found[tool] = versions(Path(tools[tool]), [tool, "numpy", "pandas", "scipy"])
    results: list[dict[str, Any]] = []
    for rows in sizes:
        reference, current = data_files(rows)
        for tool, python in tools.items():
            print(f"n={rows:>9,} {tool} ...", flush=True)
            outcome = run_worker(python, tool, reference, current)
            results.append({"rows": rows, "tool": tool, **outcome})
    log_rows = sizes[-1] if args.log_rows is None else args.log_rows
    if log_rows:
        reference, _ = data_files(log_rows)
        print(f"n={log_rows:>9,} harbourmaster over the prediction log ...", flush=True)
        outcome = run_worker(sys.executable, "harbourmaster-log", reference, log_folder(log_rows))
        results.append({"rows": log_rows, "tool": "harbourmaster-log", **outcome})
        print(f"n={log_rows:>9,} harbourmaster over the typed prediction log ...", flush=True)
        outcome = run_worker(sys.executable, "harbourmaster-log-typed", reference, typed_log_folder(log_rows))
        results.append({"rows": log_rows, "tool": "harbourmaster-log-typed", **outcome})
    report(results, found, args.out)


def report(results: list[dict[str, Any]], found: dict[str, dict[str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "versions": found,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\n{meta['when']} on {meta['machine']}")
    for tool, pins in found.items():
        print(f"  {tool}: " + ", ".join(f"{k} {v}" for k, v in pins.items()))
    print("\n| n | tool | seconds | peak MB | drifted columns | differs from Evidently |")
    print("|---:|---|---:|---:|---|---|")
    by_key = {(r["rows"], r["tool"]): r for r in results}
    for r in results:
        if "error" in r:
            print(f"| {r['rows']:,} | {r['tool']} | failed: {r['error']} | | | |")
            continue
        drifted = ", ".join(sorted(c for c, v in r["verdicts"].items() if v)) or "-"
        peer = by_key.get((r["rows"], "evidently"), {}).get("verdicts")
        differs = "-" if r["tool"] == "evidently" or not peer else (", ".join(compare(r["verdicts"], peer)) or "none")
        print(f"| {r['rows']:,} | {r['tool']} | {r['seconds']:.3f} | {r['peak_mb']:.0f} | {drifted} | {differs} |")
    print("\n| n | vs Evidently: speed | vs Evidently: memory | vs NannyML: speed |")
    print("|---:|---:|---:|---:|")
    for rows in sorted({r["rows"] for r in results}):
        ours = by_key.get((rows, "harbourmaster"))
        if not ours or "error" in ours:
            continue
        cells = []
        for tool, field in (("evidently", "seconds"), ("evidently", "peak_mb"), ("nannyml", "seconds")):
            peer = by_key.get((rows, tool))
            if not peer or "error" in peer:
                cells.append("-")
            elif field == "seconds":
                cells.append(f"{peer['seconds'] / ours['seconds']:.1f}x faster")
            else:
                cells.append(f"{ours['peak_mb'] / max(peer['peak_mb'], 1e-9):.2f} of theirs")
        print(f"| {rows:,} | " + " | ".join(cells) + " |")
    print(f"\nfull results: {out}")


if __name__ == "__main__":
    main()
