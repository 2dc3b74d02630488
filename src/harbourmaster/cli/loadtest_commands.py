"""``harbourmaster loadtest``: offer a version a fixed open-loop arrival rate on a replica of an
environment (test), report its latency percentiles, throughput and error rate against the environment's
SLA, and record the verdict as the ``loadtest`` evidence that promotion gates read."""

from __future__ import annotations

from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client
from harbourmaster.core.loadtest import DEFAULT_DURATION, DEFAULT_FLOOR, DEFAULT_HEADROOM


def loadtest(
    project: str,
    version: str,
    env: Annotated[str, typer.Option("--env", "-e", help="The environment whose replica serves VERSION.")] = "test",
    rate: Annotated[
        float | None,
        typer.Option(help="Requests per second (default: production's observed peak x --headroom, at least --floor)."),
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of load.")] = DEFAULT_DURATION,
    headroom: Annotated[float, typer.Option(help="Factor on production's peak rate.")] = DEFAULT_HEADROOM,
    floor: Annotated[float, typer.Option(help="Lowest default rate (also the rate with no prod traffic).")] = (
        DEFAULT_FLOOR
    ),
    connections: Annotated[
        int | None, typer.Option(help="Connections to the replica (default: from the rate).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="The environment VERSION is to be promoted into: its SLA, its evidence (default: the next)."),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Load-test VERSION, the champion of an environment (test by default): replay production's captured
    requests (or records sampled from its reference profile) at a fixed arrival rate, latency measured
    from each request's intended send time; passed when p99 and the error rate are within the SLA of the
    environment it is to be promoted into (--to, default the next: prod). Recorded there as evidence
    "loadtest" for its promotion gates."""
    with client(url, token) as hm:
        item = hm.load_test(
            project,
            version,
            env,
            rate=rate,
            duration=duration,
            headroom=headroom,
            floor=floor,
            connections=connections,
            to=to,
        )
    if json:
        return output.print_json(item)
    d = item.details

    def ms(key: str) -> str:
        return "-" if d.get(key) is None else f"{d[key]:.1f}"

    output.table(
        f"load test of {project} v{item.version} on {env} ({d['replica']}), for {item.environment}",
        ("rate req/s", "requests", "answered req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "late sends"),
        [
            (
                f"{d['rate']:g}",
                d["requests"],
                f"{d['throughput']:.1f}",
                ms("p50_ms"),
                ms("p95_ms"),
                ms("p99_ms"),
                ms("max_ms"),
                f"{d['errors']} ({d['error_rate']:.2%})",
                d["late_sends"],
            )
        ],
    )
    output.console.print(f"rate: {d['rate_rule']}", markup=False)
    output.console.print(f"requests: {d['requests_source']}", markup=False)
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(d["statuses"].items()))
    answered = ", ".join(f"{tag}: {count}" for tag, count in sorted(d["answered_by"].items())) or "-"
    output.console.print(f"statuses: {statuses}; answered by: {answered}", markup=False)
    verdict = "PASSED" if item.passed else "FAILED"
    output.console.print(f"{verdict}: {'; '.join(d['reasons'])} [evidence #{item.id}]", markup=False)
    if not item.passed:
        raise typer.Exit(1)
    return None


def register(app: typer.Typer) -> None:
    """Add ``loadtest`` to the ``harbourmaster`` app."""
    app.command()(loadtest)
