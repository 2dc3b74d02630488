"""The lifecycle worker: claims an open case and runs its steps through the SDK, recording each on the case.

It runs the project's code (retraining and evaluation score model code), so it runs where data-plane jobs
run, with an operator's token, never inside the control plane (DESIGN.md, trust zones). The steps, in
order (``core/cases.py``):

1. ``retrain`` the champion of the watched environment on its labelled production rows (the policy's window
   and mix);
2. ``evaluate`` the new version against the champion (``beats_champion`` and ``drift_fixed`` evidence); a
   version that does not prove the fix ends the case;
3. ``promote`` it through the environments up to the test environment, as their gates allow (straight into
   the test environment when its gates allow that, otherwise through each one before it, waiting for a
   replica to answer with it where the order gate asks for that);
4. ``loadtest`` it on a replica of the test environment, judged against the watched environment's SLA;
5. ``approval``: ask for production: a promotion that the sign-off gates refuse (so it is recorded, and
   ``harbourmaster approvals pending`` lists it); people sign off and promote.

A failed step ends the case ``failed`` with the reason (the control plane raises an alert).

The claim is a lease: while the worker runs a case it renews it (every third of the lease, from a thread); a
worker that dies or hangs stops renewing, and once the lease expired another worker reclaims the case and
resumes it: the steps recorded as succeeded are not run again, and a retrained version the dead worker
registered (its lineage names the case) is recorded rather than trained a second time. A worker whose case
was reclaimed stops at its next write (the control plane refuses writes under an old claim).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harbourmaster.core.drift_window import parse_window
from harbourmaster.errors import ConflictError, HarbourmasterError, PromotionRefusedError, storage_full
from harbourmaster.services.cases import DEFAULT_LEASE_SECONDS

if TYPE_CHECKING:
    from harbourmaster.client import Client
    from harbourmaster.services.cases import CaseInfo

Say = Callable[[str], None]


class StepFailed(Exception):
    """A step that ran and did not succeed: why, and what it made before it stopped."""

    def __init__(self, message: str, links: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.links = links or {}


def work(
    hm: Client,
    *,
    once: bool = False,
    poll: float = 10.0,
    worker: str | None = None,
    max_cases: int | None = None,
    lease: float = DEFAULT_LEASE_SECONDS,
    say: Say = lambda _: None,
) -> list[CaseInfo]:
    """Claim and run open cases (and running ones whose lease expired); with ``once`` one pass (every case
    there is now, then return), otherwise until interrupted, polling every ``poll`` seconds when there is none.
    Each claim holds ``lease`` seconds and is renewed while its case runs. Returns the cases it ran."""
    ran: list[CaseInfo] = []
    while max_cases is None or len(ran) < max_cases:
        case = hm.claim_case(worker, lease=lease)
        if case is None:
            if once:
                break
            time.sleep(poll)
            continue
        say(f"case {case.id}: {case.project} in {case.environment}, opened by alert {case.trigger.get('alert_id')}")
        if case.claims > 1:
            done = [s["step"] for s in case.steps if s["status"] == "succeeded"]
            say(
                f"case {case.id}: reclaimed from {case.claimed_by!r}'s expired lease (claim {case.claims}); "
                f"resuming after: {', '.join(done) or 'no step'}"
            )
        with Lease(hm, case, lease, say) as held:
            ran.append(run_case(hm, case, say=say, lease=held))
    return ran


class Lease:
    """Renews a claimed case's lease from a thread until the case is over or the claim is lost."""

    def __init__(self, hm: Client, case: CaseInfo, seconds: float, say: Say) -> None:
        self._hm, self._case, self._seconds, self._say = hm, case, seconds, say
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"case-{case.id}-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._seconds)

    def _renew(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            try:
                self._hm.renew_case_lease(self._case.id, self._case.claims, lease=self._seconds)
            except ConflictError as exc:
                self._say(f"case {self._case.id}: lost the claim: {exc.message}")
                self.lost.set()
                return
            except Exception as exc:  # the control plane away for a moment: the next renewal may get through
                self._say(f"case {self._case.id}: could not renew the lease ({type(exc).__name__}: {exc})")


def run_case(hm: Client, case: CaseInfo, *, say: Say = lambda _: None, lease: Lease | None = None) -> CaseInfo:
    """Run the steps of a claimed case in order, recording each; stops at the first that fails. The steps
    the case has as succeeded (a reclaimed case) are not run again."""
    state: dict[str, Any] = {"version": case.version} if case.version is not None else {}
    done = {s["step"] for s in case.steps if s["status"] == "succeeded"}
    steps: list[tuple[str, Callable[[Client, CaseInfo, dict[str, Any]], dict[str, Any]]]] = [
        ("retrain", _retrain),
        ("evaluate", _evaluate),
        ("promote", _promote),
        ("loadtest", _loadtest),
        ("approval", _approval),
    ]
    for name, step in steps:
        if name in done:
            continue
        if lease is not None and lease.lost.is_set():
            return hm.case(case.id)  # another worker holds it now
        started = datetime.now(UTC)
        say(f"case {case.id}: {name}")
        status, error, links = "succeeded", None, {}
        try:
            links = step(hm, case, state)
        except StepFailed as failed:
            status, error, links = "failed", str(failed), failed.links
        except HarbourmasterError as exc:
            status, error = "failed", exc.message + (f" (fix: {exc.hint})" if exc.hint else "")
        except Exception as exc:  # a bug or a broken dependency: the case says so instead of hanging open
            full = storage_full(exc)
            status, error = "failed", (f"{full.message} (fix: {full.hint})" if full else f"{type(exc).__name__}: {exc}")
        try:
            case = hm.record_case_step(
                case.id, name, status, links=links, error=error, started_at=started, claim=case.claims
            )
        except ConflictError as exc:
            say(f"case {case.id}: {name} not recorded: {exc.message}")
            return hm.case(case.id)
        if status == "failed":
            return case
        say(f"case {case.id}: {name} done {links}")
    return case


def _retrain(hm: Client, case: CaseInfo, state: dict[str, Any]) -> dict[str, Any]:
    found = _retrained_for(hm, case) if case.claims > 1 else None
    if found is not None:  # a worker before this one registered it and died before recording the step
        record = found.lineage.get("retrain") or {}
        state["version"] = found.number
        run = next((r for r in hm.runs(case.project) if r.version_number == found.number), None)
        return {
            "run_id": run.id if run is not None else None,
            "version": found.number,
            "digest": found.digest,
            "champion": (record.get("champion") or {}).get("version"),
            "rows": record.get("rows"),
            "recovered": "registered by an earlier claim of this case, not trained again",
        }
    policy = case.policy
    since = last = None
    if policy.get("window"):
        window = parse_window(policy["window"])
        since, last = window.start, window.last_rows
    result = hm.retrain(
        case.project,
        case.environment,
        since=since,
        last=last,
        mix_training=float(policy.get("mix_training") or 0),
        case=case.id,
    )
    record = result.version.lineage.get("retrain") or {}
    state["version"] = result.version.number
    return {
        "run_id": result.run.id,
        "version": result.version.number,
        "digest": result.version.digest,
        "champion": (record.get("champion") or {}).get("version"),
        "rows": record.get("rows"),
    }


def _retrained_for(hm: Client, case: CaseInfo, newest: int = 5) -> Any:
    """The version retrained for this case (its lineage names the case), among the project's newest few."""
    for summary in sorted(hm.versions(case.project), key=lambda v: v.number, reverse=True)[:newest]:
        detail = hm.version(case.project, summary.number)
        if (detail.lineage.get("retrain") or {}).get("case") == case.id:
            return detail
    return None


def _evaluate(hm: Client, case: CaseInfo, state: dict[str, Any]) -> dict[str, Any]:
    version = state["version"]
    proof = hm.evaluate(case.project, version, case.environment)
    links = {
        "report_id": proof.report.id,
        "verdict": proof.report.verdict,
        "evidence": [{"id": e.id, "check": e.check, "passed": e.passed} for e in proof.evidence],
    }
    failed = [e for e in proof.evidence if not e.passed]
    if failed:
        reasons = "; ".join(f"{e.check}: {e.summary}" for e in failed)
        raise StepFailed(f"v{version} did not prove the fix against the champion: {reasons}", links)
    return links


def _promote(hm: Client, case: CaseInfo, state: dict[str, Any]) -> dict[str, Any]:
    version, project = state["version"], case.project
    test, watched = case.policy.get("test_environment") or "test", case.environment
    names = [env.name for env in sorted(hm.environments(), key=lambda env: env.position)]
    for name in (test, watched):
        if name not in names:
            raise StepFailed(f"no environment {name!r} (environments, in order: {', '.join(names)})")
    if names.index(test) >= names.index(watched):
        raise StepFailed(f"the test environment {test!r} does not come before {watched!r}")
    deadline = time.monotonic() + float(case.policy.get("serve_wait_seconds") or 0)
    direct = all(gate.passed for gate in hm.check_promotion(project, version, test))
    targets = [test] if direct else names[: names.index(test) + 1]
    promoted: list[dict[str, Any]] = []
    earlier: dict[str, int] = {}  # environments an earlier claim of this case promoted it into
    if case.claims > 1:
        promotions = hm.promotions(project)
        earlier = {p.to_environment: p.id for p in promotions if p.version == version and p.outcome == "promoted"}
    for target in targets:
        if target in earlier:
            promoted.append({"environment": target, "promotion_id": earlier[target], "recovered": True})
            continue
        if target != targets[0]:
            _wait_for_order(hm, project, version, target, deadline)
        try:
            info = hm.promote(project, version, target)
        except PromotionRefusedError as refused:
            raise StepFailed(
                f"{refused.message}" + (f" (fix: {refused.hint})" if refused.hint else ""),
                {"promotions": promoted},
            ) from None
        promoted.append({"environment": target, "promotion_id": info.id})
    return {"promotions": promoted, "environment": test}


def _wait_for_order(hm: Client, project: str, version: int, target: str, deadline: float) -> None:
    """Until a replica of the environment before ``target`` answered with the version (the order gate)."""
    while True:
        order = [gate for gate in hm.check_promotion(project, version, target) if gate.gate == "order"]
        if not order or order[0].passed or time.monotonic() >= deadline:
            return  # the promotion itself then says what is missing
        time.sleep(1.0)


def _loadtest(hm: Client, case: CaseInfo, state: dict[str, Any]) -> dict[str, Any]:
    version, policy = state["version"], case.policy
    test = policy.get("test_environment") or "test"
    deadline = time.monotonic() + float(policy.get("serve_wait_seconds") or 0)
    while True:
        try:
            evidence = hm.load_test(
                case.project,
                version,
                test,
                rate=policy.get("loadtest_rate"),
                duration=float(policy.get("loadtest_duration") or 10.0),
                to=case.environment,
            )
            break
        except ConflictError as exc:
            # The replica of the test environment takes the promoted version at its next reconcile.
            if "no live replica" not in exc.message or time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
    links = {"evidence_id": evidence.id, "passed": evidence.passed, "summary": evidence.summary}
    if not evidence.passed:
        raise StepFailed(f"the load test failed: {evidence.summary}", links)
    return links


def _approval(hm: Client, case: CaseInfo, state: dict[str, Any]) -> dict[str, Any]:
    version, project, watched = state["version"], case.project, case.environment
    gates = hm.check_promotion(project, version, watched)
    missing = [f"{gate.gate}: {gate.reason}" for gate in gates if not gate.passed]
    how = f"harbourmaster promote {project} {version} --to {watched} --strategy canary"
    if not missing:
        # Production's policy asks no sign-off: a person still decides when; nothing is promoted here.
        return {"promotion_id": None, "missing": [], "next": how}
    try:
        hm.promote(project, version, watched)
    except PromotionRefusedError:
        pass  # the refusal is the request: recorded with every gate's verdict, listed as pending
    else:  # signed off meanwhile: the promotion happened, and the control plane links it to the case
        return {"promotion_id": None, "missing": [], "promoted": True}
    asked = next(
        (
            p
            for p in hm.promotions(project)
            if p.version == version and p.to_environment == watched and p.outcome == "refused"
        ),
        None,
    )
    return {
        "promotion_id": asked.id if asked else None,
        "missing": missing,
        "sign_off": f"harbourmaster approve {project} {version} --env {watched}",
        "next": how,
    }
