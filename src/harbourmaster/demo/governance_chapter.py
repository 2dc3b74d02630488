"""The demo's governance chapter, against a real control plane with real tokens: roles and grants,
sign-offs, promotion to prod, the audit log. The sandbox itself never reaches prod."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from harbourmaster.client import Client
from harbourmaster.demo.control_plane import DemoControlPlane
from harbourmaster.demo.lifecycle_chapter import Summary, run_lifecycle_chapter
from harbourmaster.errors import ConfirmationRequiredError, HarbourmasterError
from harbourmaster.services.audit import verify_export
from harbourmaster.services.duties import DutyDecision

PEOPLE = {
    "dana": ["data-scientist"],
    "olga": ["operator"],
    "rita": ["approver"],  # risk
    "bob": ["approver"],  # the business
    "ada": ["auditor"],
}


def run_governance_chapter(
    story: Any, sandbox: Client, project: str, version: int, project_dir: Path, control_plane: DemoControlPlane
) -> None:
    """The sandbox is refused prod; on the control plane Dana trains, Rita and Bob sign off, Olga promotes."""
    story.step("Embedded mode is one person's sandbox: prod is out of its reach")
    _refused(story, f"its owner promotes v{version} to prod", lambda: sandbox.promote(project, version, "prod"))

    story.step("A control plane with real users and tokens: few people can touch prod")
    with control_plane:
        story.say(
            f"`harbourmaster init` + `harbourmaster server` on a shared store in {control_plane.home}, "
            f"serving {control_plane.url}"
        )
        story.say("root (admin) adds dana (data-scientist), olga (operator, prod grant), rita and bob (approvers),")
        story.say("ada (auditor), and mints each of them a token (valid one day); each acts only with their own")
        people, tokens, confirmed = _people(control_plane, story)
        try:
            champion = _promotion_story(story, people, project, project_dir)
            summary = Summary()
            summary.add("v1 to prod", "dana, rita, bob, olga", f"v{champion} dev -> test -> prod", "2 sign-offs")
            run_lifecycle_chapter(
                story, people, tokens, confirmed, project, project_dir, control_plane, champion, summary
            )
            report = _audit_story(story, people["ada"])
            summary.add("audit", "ada", "the hash chain verifies", f"{report['checked']} entries intact")
            summary.show(story)
        finally:
            for client in people.values():
                client.close()


def _people(
    control_plane: DemoControlPlane, story: Any
) -> tuple[dict[str, Client], dict[str, str], Callable[[Callable[[], Any]], Any]]:
    """root asks for the users, the prod grant and their tokens; sam, the second admin, confirms each step."""
    root = Client(url=control_plane.url, token=control_plane.admin_token)
    sam = Client(url=control_plane.url, token=control_plane.second_admin_token)

    def confirmed(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except ConfirmationRequiredError as pending:
            request = int((pending.hint or "").rsplit(" ", 1)[-1])
            return sam.decide_request(request)

    for name, roles in PEOPLE.items():
        confirmed(lambda name=name, roles=roles: root.create_user(name, roles))
    confirmed(lambda: root.grant("olga", "prod", "deploy"))
    people = {"root": root, "sam": sam}
    tokens = {"root": control_plane.admin_token, "sam": control_plane.second_admin_token}
    for name in PEOPLE:
        minted = confirmed(lambda name=name: root.create_token(name, "demo", expires_in=timedelta(days=1)))
        secret = minted.token.token if isinstance(minted, DutyDecision) else minted.secret
        tokens[name] = secret
        people[name] = Client(url=control_plane.url, token=secret)
    story.say(
        "root creates the people, the prod grant and their tokens; each step that hands out power over prod "
        "waits for sam, the second admin, who confirms it (separation of duties)"
    )
    return people, tokens, confirmed


def _promotion_story(story: Any, people: dict[str, Client], project: str, project_dir: Path) -> int:
    dana, olga, rita, bob = people["dana"], people["olga"], people["rita"], people["bob"]
    version = dana.train(project_dir).version.number
    story.say(f"dana trains v{version} where her data is and uploads it, deploys it to dev, promotes it to test")
    dana.deploy(project, version, "dev")
    _answer_in(story, people["root"], project, project_dir, "dev")
    promoted = dana.promote(project, version, "test")
    story.say(
        "  test gates: " + "; ".join(f"{gate.gate}: {'pass' if gate.passed else 'FAIL'}" for gate in promoted.gates)
    )
    _answer_in(story, people["root"], project, project_dir, "test")
    _refused(story, "dana promotes to prod", lambda: dana.promote(project, version, "prod"))
    _refused(story, "olga promotes before any sign-off", lambda: olga.promote(project, version, "prod"))

    rita.approve(project, version, "prod", comment="risk review passed")
    bob.approve(project, version, "prod", comment="business case approved")
    story.say(f"rita (risk) and bob (business) approve v{version} for prod with their tokens, bound to its digest")
    result = olga.promote(project, version, "prod")
    for gate in result.gates:
        story.say(f"  [green]pass[/] {gate.gate}: {gate.reason}")
    story.say(f"[green]olga promoted v{version} to prod[/] (an operator with a prod grant)")
    latest = olga.history(project, "prod")[0]
    story.say(
        f"history: prod serves v{latest.version} since {latest.at:%H:%M:%S}, put there by {latest.actor}, "
        f"approved by {', '.join(latest.approved_by)}"
    )
    return version


def _answer_in(story: Any, root: Client, project: str, project_dir: Path, environment: str) -> None:
    """A replica of ``environment`` (a replica credential, no store access) loads the champion and answers one
    request: only then has the version served there, as the next environment's order gate requires."""
    import time

    import httpx
    import pandas as pd

    from harbourmaster.config import Settings
    from harbourmaster.serving.control_plane import RemoteControlPlane
    from harbourmaster.serving.server import ServerThread

    credential = root.create_replica_credential(environment, "demo", expires_in_days=1)
    settings = Settings.from_env({"HARBOURMASTER_HOME": str(project_dir.parent / f"replica-{environment}")})
    row = pd.read_csv(project_dir / "data" / "train.csv").drop(columns=["malignant"]).iloc[0]
    record = {name: float(value) for name, value in row.items()}
    with ServerThread(RemoteControlPlane(root.url, credential.secret, environment, settings), environment) as replica:
        deadline = time.monotonic() + 60
        while project not in replica.replica.table.routes and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = httpx.post(f"{replica.url}/v1/projects/{project}/predict", json=record, timeout=30).json()
    story.say(
        f"a replica of {environment} (replica credential, no store access) loads v{answer.get('version')} and "
        f"answers a request: v{answer.get('version')} has served in {environment}"
    )


def _audit_story(story: Any, ada: Client) -> dict[str, Any]:
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
    return report


def _refused(story: Any, what: str, action: Any) -> None:
    try:
        action()
    except HarbourmasterError as exc:
        story.say(f"{what} -> [red]refused[/]: {exc.message}")
        return
    raise RuntimeError(f"{what} should have been refused")
