"""The demo's lifecycle chapter, on the governance chapter's control plane: the champion in prod goes stale,
and the platform's operators (no data scientist, no code change) bring a better version to production.

A replica of prod serves the clinic's requests; a new scanner then measures sizes ("radius", "perimeter",
"area") 40 % smaller, and the ground truth of those requests arrives. The monitors raise the drift alert,
which opens a lifecycle case (the project opted in: ``[lifecycle.automation]``); the fallback rules answer
where the champion cannot; the lifecycle worker, with olga's token, retrains on production data, proves the
fix, promotes through dev and test, load-tests in test and asks for prod's sign-offs; rita and bob sign off,
olga promotes with a canary rollout under live traffic, and the case closes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.markup import escape

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.demo.control_plane import DemoControlPlane
from harbourmaster.lifecycle_worker import work
from harbourmaster.services.duties import DutyDecision
from harbourmaster.serving.control_plane import RemoteControlPlane
from harbourmaster.serving.replica import ReplicaOptions, settle_heap
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog

DRIFTED_REQUESTS = 400
SIZE_FACTOR = 0.6  # the new scanner's sizes, against the old one's
SIZES = ("radius", "perimeter", "area")
CANARY = {"strategy": "canary", "steps": [25, 50, 100], "bake": 2, "min_requests": 40}
FAST = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.25, capture_flush_seconds=0.3)
WAIT_SECONDS = 120.0
# Prod's latency SLA for a demo on a busy laptop (the load test and the canary judge by it). The load test
# offers 20 requests (10 req/s for 2 s, [lifecycle.automation] in the demo project), so its p99 is their
# slowest: one stall of this process fails it. The replicas, the control plane and the load generator all
# run in the demo's process, whose full garbage collections stopped every thread for 0.3-0.7 s (p99 641-750
# ms seen on a loaded 2-core machine); the demo now freezes its long-lived heap (settle_heap), which keeps
# the p99 near 100 ms there, well inside 500 ms. The verdict is computed as for any version.
LAPTOP_P99_MS = 500.0


@dataclass
class Summary:
    """The closing table: one row per step of the story (step, who, what, figure)."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, step: str, who: str, what: str, figure: str) -> None:
        self.rows.append((step, who, what, figure))

    def show(self, story: Any) -> None:
        story.step("Summary: one model's life, from the data scientist's project to a safe rollout")
        widths = [max(len(row[i]) for row in [*self.rows, ("step", "who", "what", "figure")]) for i in range(3)]
        for index, row in enumerate([("step", "who", "what", "figure"), *self.rows]):
            line = "  ".join(escape(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
            story.say(f"[bold]{line}  {escape(row[3])}[/]" if index == 0 else f"{line}  {escape(row[3])}")


@dataclass
class Traffic:
    """The clinic's requests to prod, one after another until stopped (bounded in time): every answer counted."""

    url: str
    token: str
    rows: list[dict[str, float]]
    max_seconds: float = 180.0
    answered: int = 0
    failed: int = 0
    versions: dict[Any, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="demo-clinic", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=30, headers=headers) as http:
            number = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                row = self.rows[number % len(self.rows)]
                number += 1
                try:
                    answer = http.post(self.url, json=row)
                except httpx.HTTPError as exc:
                    self.failed += 1
                    self.problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failed += 1
                    self.problems.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                self.answered += 1
                version = answer.json().get("version")
                self.versions[version] = self.versions.get(version, 0) + 1
                time.sleep(0.01)  # about 50-80 requests a second on a laptop: the rollout's steps fill quickly

    def stop(self) -> Traffic:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        return self


def run_lifecycle_chapter(
    story: Any,
    people: dict[str, Client],
    tokens: dict[str, str],
    confirmed: Callable[[Callable[[], Any]], Any],
    project: str,
    project_dir: Path,
    control_plane: DemoControlPlane,
    champion: int,
    summary: Summary,
) -> None:
    """From the drift alert in prod to the retrained version completing its canary rollout there."""
    began = time.perf_counter()
    root, olga, rita, bob = people["root"], people["olga"], people["rita"], people["bob"]
    frame = pd.read_csv(project_dir / "data" / "train.csv")
    features = frame.drop(columns=["malignant"])

    story.step("Production drifts: a new scanner measures sizes 40% smaller")
    confirmed(lambda: root.create_user("clinic", ["operator"]))
    confirmed(lambda: root.grant("clinic", "prod", "predict"))
    minted = confirmed(lambda: root.create_token("clinic", "demo", expires_in=timedelta(days=1)))
    tokens["clinic"] = minted.token.token if isinstance(minted, DutyDecision) else minted.secret
    # A replica credential for a guarded environment: root asks, sam confirms and receives the secret once.
    issued = confirmed(lambda: root.create_replica_credential("prod", "demo", expires_in_days=1))
    prod_secret = issued.credential.secret if isinstance(issued, DutyDecision) else issued.secret
    prod = next(env for env in root.environments() if env.name == "prod")
    config = prod.config.model_dump(mode="json")
    config["sla"] = {**(config.get("sla") or {}), "p99_ms": LAPTOP_P99_MS}
    confirmed(lambda: root.configure_environment("prod", config))
    story.say(
        "root adds the clinic's app (a user with a predict grant on prod, and its token) and asks for a replica "
        "credential of prod; sam, the second admin, confirms each"
    )
    story.say(
        f"prod's SLA asks p99 25 ms of a server of its own; on this shared machine root sets {LAPTOP_P99_MS:g} ms "
        "(sam confirms: a guarded environment's governance)"
    )
    replicas = {"prod": _replica(control_plane, project_dir, "prod", prod_secret)}
    try:
        for environment in ("dev", "test"):
            secret = root.create_replica_credential(environment, "demo", expires_in_days=1).secret
            replicas[environment] = _replica(control_plane, project_dir, environment, secret)
        for replica in replicas.values():
            _wait_loaded(replica, project, champion)
        settle_heap()  # the control plane and the replicas are new: out of the collector's reach (see story.py)
        prod_url = f"{replicas['prod'].url}/v1/projects/{project}"
        story.say(
            "replicas of dev, test and prod on loopback (replica credentials, no store access); "
            f"prod serves v{champion}"
        )
        drifted = _drifted(frame)
        answers = _send(prod_url, tokens["clinic"], drifted.drop(columns=["malignant"]))
        _feedback(prod_url, tokens["clinic"], answers, drifted["malignant"].tolist())
        log = PredictionLog(control_plane.platform.artifacts)
        _until(lambda: log.count("prod", project) >= len(answers), "the prod replica's capture to reach the log")
        wrong = sum(
            int(a["prediction"] != truth) for a, truth in zip(answers, drifted["malignant"].tolist(), strict=True)
        )
        story.say(
            f"the clinic sends {len(answers)} requests whose {len(_size_columns(features))} size measurements are 40% "
            f"smaller; v{champion} gets {wrong} of them wrong"
        )
        story.say(f"the ground truth (the biopsy results) arrives for all {len(answers)}: POST .../feedback")
        summary.add("drift", "the clinic", f"{len(answers)} scans, sizes 40% smaller", f"v{champion} wrong on {wrong}")

        story.step("The drift alert fires, and opens a lifecycle case")
        report = root.run_monitors()
        alert = next(
            (c for c in report.changes if c.change == "firing" and c.rule == "drift.dataset" and "prod" in c.subject),
            None,
        )
        if alert is None:
            raise RuntimeError("the drift alert did not fire in prod")
        shown = olga.alert(alert.alert_id)
        story.say(
            f"[bold]alert #{shown.id}[/] {shown.rule} ({shown.severity}) on {shown.subject}: {escape(shown.summary)}"
        )
        for other in report.changes:
            if other.change == "firing" and other.alert_id != alert.alert_id and "prod" in other.subject:
                also = olga.alert(other.alert_id)
                story.say(f"alert #{also.id} {also.rule} ({also.severity}): {escape(also.summary)}")
        case = next(c for c in olga.cases(project) if c.trigger.get("alert_id") == alert.alert_id)
        story.say(
            f"the project opted in (\\[lifecycle.automation] in harbourmaster.toml): case {case.id} opened, "
            f"state {case.state}"
        )
        summary.add(
            "drift alert", "monitors", f"{shown.rule} on {shown.subject}", f"alert #{shown.id} -> case {case.id}"
        )

        story.step(f"The fallback rules cover v{champion} where it cannot answer")
        olga.set_fallback(
            project,
            "prod",
            fallback={
                "rules": [{"when": {"feature": "worst area", "op": ">", "value": 880}, "output": 1}],
                "default": 0,
            },
        )
        state = olga.set_options(project, "prod", {"humility": {"enabled": True, "margin": 0.1}})
        _wait_revision(replicas["prod"], project, state.revision)
        odd = dict(_records(features.head(1))[0], **{"worst area": 25000.0})
        body = httpx.post(
            f"{prod_url}/predict", json=odd, headers={"Authorization": f"Bearer {tokens['clinic']}"}, timeout=30
        ).json()
        story.say(
            f"olga (operator) sets prod's fallback rules; a scan far beyond anything v{champion} was trained on -> "
            f"malignant={body['prediction']} via [bold]{body['path']}[/] ({body['fallback']['reason']}: "
            f"{body['fallback']['detail']})"
        )
        state = olga.set_options(project, "prod", {})
        _wait_revision(replicas["prod"], project, state.revision)
        story.say("the rules stay as the last resort for errors and timeouts; the humility check is off again")
        summary.add("fallback", "olga", "rules answer where the model cannot", f"path={body['path']}")

        story.step("The lifecycle worker runs the case: retrain, prove, promote, load-test, ask for sign-off")
        story.say(
            "`harbourmaster lifecycle worker --url ... --token $OLGA` (olga's token: an operator, no data scientist)"
        )
        smoke = _Smoke([f"{replicas[e].url}/v1/projects/{project}/predict" for e in ("dev", "test")], features)
        smoke.start()
        try:
            (case,) = work(olga, once=True, say=lambda line: _progress(story, line))
        finally:
            smoke.stop()
        if case.state != "waiting_signoff":
            raise RuntimeError(f"case {case.id} ended {case.state}: {case.reason}")
        settle_heap()  # the retrained version, loaded by the replicas, before the canary measures latency
        steps = {s["step"]: s["links"] for s in case.steps}
        version = steps["retrain"]["version"]
        _show_case(case.id, control_plane.url, tokens["olga"])
        _show_retrain(story, olga, project, version, summary)
        _show_proof(story, olga, project, version, summary)
        _show_loadtest(story, olga, project, version, summary)

        story.step(f"Sign-offs, then a canary rollout of v{version} in prod under live traffic")
        rita.approve(project, version, "prod", comment="retrained on production data; beats the champion")
        bob.approve(project, version, "prod", comment="load test passed")
        story.say(f"rita and bob approve v{version} for prod (the case asked for it)")
        rows = _records(_drifted(frame, seed=21).drop(columns=["malignant"]))
        clinic = Traffic(f"{prod_url}/predict", tokens["clinic"], rows).start()
        controller = control_plane.platform.rollouts.start_controller(0.5)
        try:
            time.sleep(1.0)  # traffic before the rollout starts, so the champion's side has figures too
            promoted = olga.promote(project, version, "prod", rollout=CANARY)
            story.say(
                f"olga: harbourmaster promote {project} {version} --to prod --strategy canary --steps 25,50,100 "
                f"--bake 2s  (rollout {promoted.rollout_id}; the clinic keeps sending requests)"
            )
            rollout = _follow_rollout(story, olga, promoted.rollout_id)
            time.sleep(1.0)  # and after it: every request answered by the new champion alone
        finally:
            if controller is not None:
                controller.stop()
            clinic.stop()
        if rollout.state != "completed":
            raise RuntimeError(
                f"the rollout ended {rollout.state}: {rollout.reason} (the clinic: {clinic.answered} answered, "
                f"{clinic.failed} failed: {clinic.problems[:2]})"
            )
        by_version = ", ".join(f"v{v}: {n}" for v, n in sorted(clinic.versions.items(), key=lambda kv: str(kv[0])))
        colour = "green" if clinic.failed == 0 else "red"
        story.say(
            f"the clinic sent {clinic.answered + clinic.failed} requests from before the rollout to after it: "
            f"[{colour}]{clinic.failed} failed requests[/] (answered by {by_version})"
        )
        for problem in clinic.problems[:3]:
            story.say(f"  [red]{problem}[/]")
        summary.add(
            "canary rollout",
            "rita, bob, olga",
            f"2 sign-offs; v{version} canary 25 -> 50 -> 100% of prod",
            f"{clinic.answered + clinic.failed} requests, {clinic.failed} failed",
        )
        root.run_monitors()  # the next monitor pass links the promotion and closes the case
        case = olga.case(case.id)
        serving = olga.deployment(project, "prod").champion
        story.say(
            f"the next monitor pass links the rollout to case {case.id}: {case.state} ({case.outcome}); "
            f"prod serves v{serving.number if serving else '-'}"
        )
        summary.add("case closed", "monitors", f"case {case.id}: alert -> steps -> sign-off -> rollout", case.state)
        story.say(f"this chapter, from the drift to the closed case, took {time.perf_counter() - began:.0f} s")
    finally:
        for replica in replicas.values():
            replica.stop()


# -- what the worker made ---------------------------------------------------------------------------


def _show_case(case_id: int, url: str, token: str) -> None:
    from harbourmaster.cli.cases_commands import show
    from harbourmaster.demo.story import console

    console.print(f"\n   $ harbourmaster cases show {case_id}")
    show(case_id, url=url, token=token, json=False)


def _progress(story: Any, line: str) -> None:
    """The worker's progress, one line per step done (its links are in the case, shown next)."""
    if " done " in line or "opened by" in line:
        story.say(f"  [dim]{escape(line.split(' {', 1)[0])}[/]")


def _show_retrain(story: Any, hm: Client, project: str, version: int, summary: Summary) -> None:
    lineage = hm.version(project, version).lineage.get("retrain") or {}
    rows = lineage.get("rows") or {}
    champion = (lineage.get("champion") or {}).get("version")
    story.say(
        f"[green]v{version} retrained[/] on production data by {lineage.get('run_by')}: "
        f"{rows.get('production_training')} labelled prod rows trained on, {rows.get('held_out')} held out; "
        f"code from v{champion}'s bundle (no data scientist needed)"
    )
    trained = f"{rows.get('production_training')} rows, {rows.get('held_out')} held out"
    summary.add("retrain", "olga (worker)", f"v{version} on prod's labelled rows", trained)


def _show_proof(story: Any, hm: Client, project: str, version: int, summary: Summary) -> None:
    evidence = {e.check: e for e in hm.evidence(project, version, "prod")}
    beats, fixed = evidence["beats_champion"], evidence["drift_fixed"]
    report = beats.details.get("report") or beats.details
    story.say(f"challenger v{version} against the champion on the held-out prod rows:")
    for pair in report.get("metrics", []):
        story.say(f"  {pair['metric']:<10} v{version} {_num(pair['candidate'])}   champion {_num(pair['champion'])}")
    verdict = report.get("verdict", "beats" if beats.passed else "no")
    story.say(f"  verdict: [bold]{verdict}[/] the champion ({beats.summary})")
    comparison = fixed.details.get("comparison") or {}
    story.say("drift of the current prod window against each version's reference (score: 1 = at the threshold):")
    for item in sorted(comparison.get("features", []), key=lambda f: -(f.get("champion_score") or 0))[:6]:
        story.say(
            f"  {item['feature']:<24} v{version} {_num(item['candidate_score'], 1):>6}   "
            f"champion {_num(item['champion_score'], 1):>6}   {item['change']}"
        )
    story.say(f"  drift fixed: [bold]{'yes' if fixed.passed else 'no'}[/] ({fixed.summary})")
    accuracy = next((p for p in report.get("metrics", []) if p["metric"] == "accuracy"), None)
    figure = f"{verdict}; drift fixed: {'yes' if fixed.passed else 'no'}"
    if accuracy is not None:
        figure += f"; accuracy {_num(accuracy['candidate'])} vs {_num(accuracy['champion'])}"
    summary.add("evaluate", "olga (worker)", f"v{version} against champion v{report.get('champion')}", figure)


def _show_loadtest(story: Any, hm: Client, project: str, version: int, summary: Summary) -> None:
    load = next(e for e in hm.evidence(project, version, "prod") if e.check == "loadtest")
    story.say(f"load test in test: [bold]{'passed' if load.passed else 'FAILED'}[/] ({load.summary})")
    figure = load.summary.split(";", 1)[0].split(": ", 1)[-1]
    verdict = "passed" if load.passed else "FAILED"
    summary.add("load test", "olga (worker)", f"v{version} on a replica of test", f"{verdict}: {figure}")


def _follow_rollout(story: Any, hm: Client, rollout_id: int) -> Any:
    """Print each step the controller takes, until the rollout is over (bounded)."""
    shown: set[tuple[str, str]] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rollout = hm.rollout(rollout_id)
        for event in rollout.events:
            if event["kind"] != "waiting" and (event["at"], event["kind"]) not in shown:
                shown.add((event["at"], event["kind"]))
                story.say(f"  rollout {event['kind']}: {escape(event['text'])}")
        if rollout.state not in ("running", "paused") or time.monotonic() > deadline:
            return rollout
        time.sleep(0.3)


# -- traffic ------------------------------------------------------------------------------------------


class _Smoke:
    """A request every half second to the replicas of dev and test: a version answers there once promoted,
    which is what the next environment's order gate asks for."""

    def __init__(self, urls: list[str], features: pd.DataFrame) -> None:
        self._urls = urls
        self._row = _records(features.head(1))[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-smoke", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.wait(0.5):
                for url in self._urls:
                    # A smoke request; the order gate says what is missing if none got through.
                    with contextlib.suppress(httpx.HTTPError):
                        http.post(url, json=self._row)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _size_columns(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if any(size in c for size in SIZES)]


def _drifted(frame: pd.DataFrame, seed: int = 12) -> pd.DataFrame:
    drifted = frame.sample(DRIFTED_REQUESTS, replace=True, random_state=seed)
    sizes = _size_columns(drifted.drop(columns=["malignant"]))
    drifted[sizes] = drifted[sizes] * SIZE_FACTOR
    return drifted


def _records(rows: pd.DataFrame) -> list[dict[str, float]]:
    return [{name: float(value) for name, value in record.items()} for record in rows.to_dict(orient="records")]


def _send(url: str, token: str, rows: pd.DataFrame) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, headers=headers) as http:
        answers = []
        for record in _records(rows):
            answer = http.post(f"{url}/predict", json=record)
            answer.raise_for_status()
            answers.append(answer.json())
    return answers


def _feedback(url: str, token: str, answers: list[dict[str, Any]], truth: list[int]) -> None:
    items = [{"request_id": a["request_id"], "value": int(v)} for a, v in zip(answers, truth, strict=True)]
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{url}/feedback", json={"feedback": items}, headers=headers, timeout=60).raise_for_status()


# -- replicas -----------------------------------------------------------------------------------------


def _replica(control_plane: DemoControlPlane, project_dir: Path, environment: str, secret: str) -> ServerThread:
    settings = Settings.from_env({"HARBOURMASTER_HOME": str(project_dir.parent / f"replica-{environment}")})
    remote = RemoteControlPlane(control_plane.url, secret, environment, settings)
    return ServerThread(remote, environment, FAST).start()


def _wait_loaded(server: ServerThread, project: str, version: int) -> None:
    def loaded() -> bool:
        route = server.replica.table.routes.get(project)
        return route is not None and route.state.champion is not None and route.state.champion.number == version

    _until(loaded, f"a replica to load v{version}")


def _wait_revision(server: ServerThread, project: str, revision: int) -> None:
    def taken() -> bool:
        route = server.replica.table.routes.get(project)
        return route is not None and route.revision >= revision

    _until(taken, "the replica to take the change")


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
