"""``harbourmaster alerts``, ``notifiers`` and ``monitor``: thin faces over the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client, parse_duration
from harbourmaster.errors import InvalidInputError

alerts_app = typer.Typer(
    help="Alerts raised by the monitors: list them, acknowledge or silence one (audited).",
    invoke_without_command=True,
)
notifiers_app = typer.Typer(
    help="Where alerts are sent: log, JSON webhook, Slack webhook (admins).", no_args_is_help=True
)

AllOption = Annotated[bool, typer.Option("--all", help="Include resolved alerts.")]


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    all: AllOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Firing alerts, newest first (--all: resolved ones too)."""
    if ctx.invoked_subcommand is not None:
        return
    with client(url, token) as hm:
        items = hm.alerts(include_resolved=all)
    if json:
        return output.print_json(items)
    if not items:
        output.console.print(
            "No alerts." if all else "No firing alerts (harbourmaster alerts --all shows resolved ones too)."
        )
        return
    output.table(
        None,
        ["id", "status", "severity", "rule", "subject", "env", "summary", "since", "fired", "ack / silenced"],
        [
            (
                a.id,
                a.status,
                a.severity,
                a.rule,
                a.subject,
                a.environment or "-",
                a.summary[:80],
                output.when(a.first_fired_at),
                a.fired_count,
                _handling(a.acknowledged_by, a.silenced_until),
            )
            for a in items
        ],
    )


def _handling(acknowledged_by: str | None, silenced_until: object) -> str:
    parts = []
    if acknowledged_by:
        parts.append(f"ack by {acknowledged_by}")
    if silenced_until:
        parts.append(f"silenced until {output.when(silenced_until)}")  # type: ignore[arg-type]
    return ", ".join(parts) or "-"


@alerts_app.command("show")
def show_alert(alert_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """One alert and where it was sent (attempts, status and last error of each delivery)."""
    with client(url, token) as hm:
        alert = hm.alert(alert_id)
        deliveries = hm.alert_deliveries(alert_id)
    if json:
        return output.print_json({"alert": alert, "deliveries": deliveries})
    out = output.console
    where = f" in {alert.environment}" if alert.environment else ""
    out.print(f"alert {alert.id}: {alert.rule} on {alert.subject}{where}: {alert.status}, {alert.severity}")
    out.print(f"  {alert.summary}", markup=False)
    out.print(f"  evidence: {alert.evidence or '-'}; fired {alert.fired_count} time(s)", markup=False)
    out.print(
        f"  first {output.when(alert.first_fired_at)}, last {output.when(alert.last_fired_at)}, "
        f"resolved {output.when(alert.resolved_at)}"
    )
    out.print(f"  {_handling(alert.acknowledged_by, alert.silenced_until)}", markup=False)
    output.table(
        "deliveries",
        ["notifier", "event", "status", "attempts", "last error", "delivered"],
        [
            (d.notifier, d.event, d.status, d.attempts, (d.last_error or "-")[:80], output.when(d.delivered_at))
            for d in deliveries
        ],
    )


@alerts_app.command("ack")
def ack(alert_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Acknowledge a firing alert (audited; needs deploy rights in its environment)."""
    with client(url, token) as hm:
        alert = hm.acknowledge_alert(alert_id)
    if json:
        return output.print_json(alert)
    output.console.print(f"alert {alert.id} ({alert.rule} on {alert.subject}) acknowledged by {alert.acknowledged_by}")


@alerts_app.command("silence")
def silence(
    alert_id: int,
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 2h, 1d (at most 30d).")],
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """No notification of this alert for a while (audited; needs deploy rights in its environment)."""
    duration = parse_duration(for_)
    with client(url, token) as hm:
        alert = hm.silence_alert(alert_id, duration)
    if json:
        return output.print_json(alert)
    output.console.print(
        f"alert {alert.id} ({alert.rule} on {alert.subject}) silenced until {output.when(alert.silenced_until)}"
    )


@notifiers_app.command("add")
def add_notifier(
    name: str,
    kind: Annotated[str, typer.Option("--kind", help="log, webhook (generic JSON) or slack.")],
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="The receiver's URL (a secret; shown masked).")
    ] = None,
    min_severity: Annotated[str, typer.Option("--min-severity", help="warning or critical.")] = "warning",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Send alert changes somewhere (admins; audited with the URL masked)."""
    with client(url, token) as hm:
        info = hm.add_notifier(name, kind, webhook, min_severity)
    if json:
        return output.print_json(info)
    output.console.print(
        f"notifier {info.name} ({info.kind} -> {info.target}) added, from severity {info.min_severity}"
    )


@notifiers_app.command("list")
def list_notifiers(url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Configured notifiers (their URLs masked)."""
    with client(url, token) as hm:
        items = hm.notifiers()
    if json:
        return output.print_json(items)
    if not items:
        output.console.print("No notifiers: alerts show in `harbourmaster alerts` and the server's log only.")
        return
    output.table(
        None,
        ["name", "kind", "target", "min severity", "created by", "created"],
        [(n.name, n.kind, n.target, n.min_severity, n.created_by, output.when(n.created_at)) for n in items],
    )


@notifiers_app.command("remove")
def remove_notifier(name: str, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Stop sending alerts to a notifier (admins; audited)."""
    with client(url, token) as hm:
        info = hm.remove_notifier(name)
    if json:
        return output.print_json(info)
    output.console.print(f"notifier {info.name} removed")


def monitor(
    once: Annotated[bool, typer.Option("--once", help="Run every monitor once now (for cron).")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Run the monitors once and deliver due notifications (the server runs them on a schedule)."""
    if not once:
        raise InvalidInputError(
            "the monitors run on a schedule inside `harbourmaster server` (HARBOURMASTER_MONITOR_INTERVAL)",
            "to run them once now, e.g. from cron: harbourmaster monitor --once",
        )
    with client(url, token) as hm:
        report = hm.run_monitors()
    if json:
        return output.print_json(report)
    output.table(
        "results",
        ["monitor", "subject", "metric", "status", "value", "summary"],
        [(r.monitor, r.subject, r.metric, r.status, output.number(r.value), r.summary[:90]) for r in report.results],
    )
    for run in report.runs:
        if run.status != "succeeded":
            output.errors.print(f"monitor {run.monitor} failed: {run.error}", markup=False)
    for change in report.changes:
        if change.change != "updated":
            output.console.print(
                f"alert {change.alert_id} {change.change}: {change.rule} on {change.subject} "
                f"({change.notifications} notification(s) queued)",
                markup=False,
            )
    if url:
        output.console.print(f"{report.queued} notification(s) queued; the server delivers them (with retries).")
    else:
        output.console.print(
            f"{report.queued} notification(s) queued; {report.delivered} delivered now "
            "(failed attempts are retried at the next run)."
        )


def register(app: typer.Typer) -> None:
    """Add the alert, notifier and monitor commands to the ``harbourmaster`` app."""
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(notifiers_app, name="notifiers")
    app.command()(monitor)
