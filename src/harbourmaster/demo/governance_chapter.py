"""The demo's governance chapter: roles and grants, sign-offs, promotion to prod, the audit log."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harbourmaster.client import Client
from harbourmaster.errors import HarbourmasterError
from harbourmaster.services.audit import verify_export

PEOPLE = {
    "dana": ["data-scientist"],
    "olga": ["operator"],
    "rita": ["approver"],  # risk
    "bob": ["approver"],  # the business
    "ada": ["auditor"],
}


def run_governance_chapter(story: Any, owner: Client, project: str, project_dir: Path) -> None:
    """Dana trains; she cannot reach prod; Rita and Bob sign off; Olga promotes; the audit log holds."""
    story.step("Governance: few people can touch prod")
    existing = {user.name for user in owner.users()}
    for name, roles in PEOPLE.items():
        if name not in existing:
            owner.create_user(name, roles)
    if "prod:deploy" not in next(user for user in owner.users() if user.name == "olga").grants:
        owner.grant("olga", "prod", "deploy")
    story.say("users: dana (data-scientist), olga (operator, prod grant), rita and bob (approvers), ada (auditor)")
    dana, olga, rita, bob, ada = (owner.acting_as(name) for name in ("dana", "olga", "rita", "bob", "ada"))

    version = dana.train(project_dir).version.number
    story.say(f"dana trains v{version}, deploys it to dev and promotes it to test")
    dana.deploy(project, version, "dev")
    promoted = dana.promote(project, version, "test")
    story.say(
        "  test gates: " + "; ".join(f"{gate.gate}: {'pass' if gate.passed else 'FAIL'}" for gate in promoted.gates)
    )
    _refused(story, "dana promotes to prod", lambda: dana.promote(project, version, "prod"))
    _refused(story, "olga promotes before any sign-off", lambda: olga.promote(project, version, "prod"))

    rita.approve(project, version, "prod", comment="risk review passed")
    bob.approve(project, version, "prod", comment="business case approved")
    story.say(f"rita (risk) and bob (business) approve v{version} for prod, bound to its digest")
    result = olga.promote(project, version, "prod")
    for gate in result.gates:
        story.say(f"  [green]pass[/] {gate.gate}: {gate.reason}")
    story.say(f"[green]olga promoted v{version} to prod[/]")
    latest = owner.history(project, "prod")[0]
    story.say(
        f"history: prod serves v{latest.version} since {latest.at:%H:%M:%S}, put there by {latest.actor}, "
        f"approved by {', '.join(latest.approved_by)}"
    )

    story.step("The audit log: hash-chained, verifiable, exportable")
    report = ada.audit_verify()
    story.say(f"ada (auditor) verifies: {report['checked']} entries intact, head sha256:{report['head_hash'][:16]}")
    export = ada.audit_export(format="jsonl")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "audit.jsonl"
        copy.write_text(export)
        story.say(f"exported {len(export.splitlines()) - 1} entries with the chain head for a regulator")
        story.say(f"the export verifies on its own: {'yes' if verify_export(copy.read_text()).ok else 'NO'}")
        lines = copy.read_text().splitlines()
        target = next(i for i, line in enumerate(lines) if '"version.promote"' in line and '"olga"' in line)
        lines[target] = lines[target].replace('"olga"', '"mallory"')
        copy.write_text("\n".join(lines) + "\n")
        tampered = verify_export(copy.read_text())
        story.say(f"someone rewrites who promoted to prod in a copy -> [red]{tampered.problem}[/]")


def _refused(story: Any, what: str, action: Any) -> None:
    try:
        action()
    except HarbourmasterError as exc:
        story.say(f"{what} -> [red]refused[/]: {exc.message}")
        return
    raise RuntimeError(f"{what} should have been refused")
