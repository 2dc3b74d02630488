"""Cost of capture on the request path and of the spool's fsync policy (micro-benchmark, one process).

Measures ``CaptureWriter.submit`` for a 1-row request of the breast-cancer shape (30 numeric inputs,
one label, two probabilities): the JSON line appended to the spool plus the queue entry, with the
writer thread running (it converts, fdatasyncs every ``fsync_seconds`` and uploads to a local
folder). Prints microseconds per request (median of rounds) for each fsync interval given.

    python benchmarks/capture/spool.py [--requests 50000] [--rounds 5] [--fsync 0.2 0.05 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harbourmaster.serving.capture import Captured, CaptureWriter, now_us
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.artifacts import ArtifactStore


def one_round(folder: Path, requests: int, fsync: float) -> float:
    store = ArtifactStore(str(folder / "artifacts"))
    writer = CaptureWriter(store, ServingMetrics("bench"), spool_dir=folder / "spool", fsync_seconds=fsync)
    record = {f"feature {i}": 10.0 + i * 0.123 for i in range(30)}
    probabilities = [{"0": 0.1234567, "1": 0.8765433}]
    started = time.perf_counter()
    for i in range(requests):
        writer.submit(Captured(now_us(), f"r{i}", "p", 1, "champion", None, 200, 1.0, [record], [1], probabilities))
    elapsed = time.perf_counter() - started
    writer.close()
    assert writer.written == requests, (writer.written, requests)
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fsync", type=float, nargs="+", default=[0.2, 0.05, 1.0])
    args = parser.parse_args()
    for fsync in args.fsync:
        costs = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                costs.append(one_round(Path(folder), args.requests, fsync))
        print(
            f"fsync every {fsync:>5} s: submit {statistics.median(costs):6.1f} us/request "
            f"(min {min(costs):.1f}, max {max(costs):.1f}, {args.rounds} rounds of {args.requests})"
        )


if __name__ == "__main__":
    main()
