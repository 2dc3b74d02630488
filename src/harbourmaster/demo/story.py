"""``harbourmaster demo``: the product's showcase, told as a story with progress.

It builds a demo project from a data set that ships inside scikit-learn (no
download), trains and registers versions through the same services every face
uses, compares them, registers one from "a notebook", and proves that a version
predicts identically in a fresh process that has never seen the project folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from harbourmaster.client import Client
from harbourmaster.config import Settings, find_store

if TYPE_CHECKING:
    from harbourmaster.demo.control_plane import DemoControlPlane

TEMPLATE = Path(__file__).parent / "project"
PROJECT = "breast-cancer"
RECENT_DATA = "recent.csv"
FRESH_PROCESS_SECONDS = 240.0
EXAMPLE_REQUEST = "row.json"  # next to the project folder: a .json inside it would ship in its bundles
console = Console(highlight=False, soft_wrap=True)


class Story:
    """Numbered chapters with timings, so a newcomer can follow along."""

    def __init__(self) -> None:
        self.chapter = 0
        self.started = time.perf_counter()

    def step(self, title: str) -> None:
        self.chapter += 1
        console.print(f"\n[bold cyan]{self.chapter}. {title}[/]")

    def say(self, text: str) -> None:
        console.print(f"   {text}")

    def done(self) -> None:
        console.print(f"\n[bold green]Demo finished in {time.perf_counter() - self.started:.1f}s.[/]")


def write_demo_project(folder: Path) -> pd.DataFrame:
    """Copy the demo project's code and write its training data (from scikit-learn)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in TEMPLATE.iterdir():
        if source.suffix in {".py", ".toml"}:
            shutil.copyfile(source, folder / source.name)
    dataset = load_breast_cancer(as_frame=True)
    frame = dataset.frame.rename(columns={"target": "malignant"})
    frame["malignant"] = (frame["malignant"] == 0).astype(int)  # sklearn codes malignant as 0
    (folder / "data").mkdir(exist_ok=True)
    frame.to_csv(folder / "data" / "train.csv", index=False)
    # Another batch of labelled rows, for `harbourmaster train DIR --data ...` (same pipeline, other data).
    frame.sample(frac=0.8, random_state=11).to_csv(folder / "data" / RECENT_DATA, index=False)
    return frame


def write_example_request(path: Path, frame: pd.DataFrame) -> Path:
    """One request body for the predict endpoint (``curl -d @row.json``): a row's features, no target."""
    row = frame.drop(columns=["malignant"]).iloc[0]
    path.write_text(json.dumps({name: float(value) for name, value in row.items()}, indent=1) + "\n")
    return path


def set_param(project_file: Path, value: float) -> None:
    text = project_file.read_text()
    lines = [
        f"params = {{ C = {value} }}          # passed to train() as keyword arguments"
        if line.startswith("params =")
        else line
        for line in text.splitlines()
    ]
    project_file.write_text("\n".join(lines) + "\n")


FRESH_PROCESS_CHECK = """
import json, sys
import pandas as pd
from harbourmaster.client import Client
rows = pd.read_json(sys.argv[1], orient="records")
with Client() as hm:
    pipeline = hm.load(sys.argv[2], int(sys.argv[3]))
    print(json.dumps(pipeline.predict_proba(rows)[:, 1].round(12).tolist()))
"""


def run_demo(home: Path | None = None) -> None:
    if home is not None:
        os.environ["HARBOURMASTER_HOME"] = str(Path(home).absolute())
    settings = Settings.from_env()
    _require_sandbox(settings)
    story = Story()
    console.print("[bold]Harbourmaster demo[/]: from a data scientist's project to a governed production.")
    console.print(
        f"Your sandbox is {settings.home} (SQLite + a local artifact folder): embedded mode, no server, no users."
    )

    project_dir = settings.home / "demo" / PROJECT
    with Client(settings=settings) as hm:
        earlier = _earlier_versions(hm)
        if earlier:
            story.say(
                f"This sandbox already holds {PROJECT} v1-v{earlier} from an earlier run: this run adds "
                f"v{earlier + 1} and up, and deploys its own."
            )

        story.step("A data scientist's project")
        frame = write_demo_project(project_dir)
        request = write_example_request(project_dir.parent / EXAMPLE_REQUEST, frame)
        story.say(f"{project_dir}: harbourmaster.toml, features.py (data preparation + a custom transformer), model.py")
        story.say(
            f"training data: {len(frame)} rows x {frame.shape[1] - 1} features "
            f"(scikit-learn's breast-cancer set, no download); data/{RECENT_DATA}: another batch to train on"
        )
        story.say(f"{request}: one request to send to a replica")

        story.step(f"Train v{earlier + 1} with `harbourmaster train` (the same pipeline operators rerun later)")
        first = hm.train(project_dir)
        story.say(_trained(first.version.number, first.version.metrics, first.run.duration_seconds))
        story.say(
            f"bundle sha256:{first.version.digest[:16]}... holds the data preparation, the model and the project code"
        )

        story.step(f"Tune a parameter and train again: v{first.version.number + 1}")
        set_param(project_dir / "harbourmaster.toml", 1.0)
        second = hm.train(project_dir)
        story.say(_trained(second.version.number, second.version.metrics, second.run.duration_seconds))
        comparison = hm.diff(PROJECT, first.version.number, second.version.number)
        for change in comparison.metric_changes:
            if change.delta is not None:
                verdict = "better" if change.improved else "worse" if change.improved is False else "same"
                story.say(f"{change.name}: {change.before:.4f} -> {change.after:.4f} ({verdict})")
        story.say(
            "schema: " + ("unchanged" if not comparison.input_changes else f"{len(comparison.input_changes)} change(s)")
        )

        features = frame.drop(columns=["malignant"])
        sample = features.sample(5, random_state=1)
        fresh_check = FreshProcessCheck(sample, second.version.number, settings)  # answers in chapter 6

        story.step(f"Register v{second.version.number + 1}, a model trained interactively, as from a notebook")
        x_train, x_test, y_train, y_test = train_test_split(
            features,
            frame["malignant"],
            test_size=0.25,
            random_state=7,
            stratify=frame["malignant"],
        )
        forest = RandomForestClassifier(n_estimators=60, random_state=7).fit(x_train, y_train)
        third = hm.register(
            PROJECT,
            forest,
            x_train.assign(malignant=y_train),
            target="malignant",
            metrics=["accuracy", "roc_auc", "f1"],
            eval_data=x_test.assign(malignant=y_test),
            description="random forest from a notebook",
        )
        story.say(_trained(third.number, third.metrics, None))
        hm.tag(PROJECT, second.version.number, "candidate", "best logistic model")
        story.say(f"tagged v{second.version.number} as candidate")

        story.step("The registry")
        for version in hm.versions(PROJECT):
            metrics = ", ".join(f"{name} {value:.3f}" for name, value in version.metrics.items())
            tags = f"  tags: {', '.join(version.tags)}" if version.tags else ""
            story.say(f"v{version.number}  sha256:{version.digest[:12]}  {version.format:6}  {metrics}{tags}")
        detail = hm.version(PROJECT, second.version.number)
        lineage = detail.lineage
        story.say(
            f"v{detail.number} lineage: data fingerprint {lineage['data']['fingerprint'][:12]}, "
            f"{lineage['data']['rows']} rows, code {_code(lineage.get('code', {}))}, "
            f"parent v{lineage.get('parent_version')}"
        )

        story.step(f"Load v{second.version.number} in a fresh process, far from the project folder")
        in_process = hm.load(PROJECT, second.version.number).predict_proba(sample)[:, 1].round(12).tolist()
        fresh = fresh_check.result()
        same = fresh == in_process
        story.say("every file checked against its sha256 digest before loading")
        story.say(f"probabilities in this process:  {[round(p, 4) for p in in_process]}")
        story.say(f"probabilities in a new process: {[round(p, 4) for p in fresh]}")
        story.say(
            "[green]identical[/]: the custom transformer and data preparation travelled with the bundle"
            if same
            else "[red]different![/]"
        )
        if not same:
            raise SystemExit(1)

    from harbourmaster.demo.serving_chapter import run_serving_chapter
    from harbourmaster.serving.replica import settle_heap

    # From here the demo serves: replicas, a control plane and load in this one process, whose heap (pandas,
    # scikit-learn, three trained versions) a full garbage collection walks with every thread stopped, 0.3-0.7 s
    # on a busy laptop. Frozen out of the collector's reach, as `harbourmaster serve` and `server` do.
    settle_heap()
    run_serving_chapter(story, settings, PROJECT, second.version.number, features)

    from harbourmaster.demo.monitoring_chapter import run_monitoring_chapter

    run_monitoring_chapter(story, settings, PROJECT, second.version.number, features)

    from harbourmaster.demo.control_plane import DemoControlPlane
    from harbourmaster.demo.governance_chapter import run_governance_chapter

    control_plane = DemoControlPlane(settings.home / "demo" / "control-plane")
    with Client(settings=settings) as sandbox:
        run_governance_chapter(story, sandbox, PROJECT, second.version.number, project_dir, control_plane)

    _what_next(story, settings, first.version.number, second.version.number, control_plane)
    story.done()


def _what_next(story: Story, settings: Settings, first: int, second: int, control_plane: DemoControlPlane) -> None:
    """Where the sandbox is, how later commands find it, and the tour's next commands with this run's numbers."""
    story.step("What next: the README's five-minute tour goes on from here")
    if find_store(Path.cwd()) == settings.home:
        story.say(f"Your sandbox is {settings.home}: every command you run in this folder (or below) uses it.")
    else:
        story.say(f"Your sandbox is {settings.home}: from this folder, commands use it with HARBOURMASTER_HOME set:")
        story.say(f"  export HARBOURMASTER_HOME={settings.home}")
    project_dir = _shown(settings.home / "demo" / PROJECT)
    request = _shown(settings.home / "demo" / EXAMPLE_REQUEST)
    story.say(f"  harbourmaster versions {PROJECT}")
    story.say(f"  harbourmaster show {PROJECT} {second}        # schema, metrics and where they come from")
    story.say(f"  harbourmaster diff {PROJECT} {first} {second}")
    story.say(f"  harbourmaster train {project_dir} --data {project_dir}/data/{RECENT_DATA}")
    story.say(f"  harbourmaster serve --env dev --port 8800 &        # dev serves v{second} (see docs/serving.md)")
    story.say(f"  curl -s 127.0.0.1:8800/v1/projects/{PROJECT}/predict -d @{request}")
    story.say(f"The governance chapter's control plane ({_shown(control_plane.home)}, admin token in admin-token):")
    story.say(f"  HARBOURMASTER_HOME={control_plane.home} harbourmaster server --port 8700 &")
    story.say(f"  export HARBOURMASTER_URL=http://127.0.0.1:8700 HARBOURMASTER_TOKEN=$(cat {control_plane.token_file})")
    story.say(f"  harbourmaster history {PROJECT} --env prod && harbourmaster audit verify")
    story.say(f"  harbourmaster cases list && harbourmaster rollouts --project {PROJECT}   # the lifecycle's record")


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it (shorter to type), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _require_sandbox(settings: Settings) -> None:
    """The demo tells a sandbox's story: a store made shared (``harbourmaster init``) is refused, break glass or not."""
    from harbourmaster.errors import PermissionDeniedError
    from harbourmaster.services.sandbox import check_store_for

    try:
        check_store_for(settings, "the demo")
    except PermissionDeniedError as exc:
        raise PermissionDeniedError(
            f"the demo runs in a sandbox, and {settings.home} is shared now (it has users: `harbourmaster init` ran "
            "on it)",
            f"run it in another folder (or with --home ANOTHER_FOLDER), or delete {settings.home} to start over",
        ) from exc


def _earlier_versions(hm: Client) -> int:
    """The latest version of the demo project already in this sandbox (0 on a first run)."""
    project = next((item for item in hm.projects() if item.name == PROJECT), None)
    return project.latest_version or 0 if project is not None else 0


def _trained(number: int, metrics: dict[str, float], seconds: float | None) -> str:
    shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    return f"[green]v{number} registered[/]{took}; held-out {shown}"


def _code(code: dict) -> str:
    if code.get("kind") == "git":
        return f"git {code['sha'][:10]}"
    return f"files sha256 {str(code.get('sha256', ''))[:10]}"


class FreshProcessCheck:
    """A version's probabilities for a few rows, computed by a new interpreter in an empty folder far from the
    project. Started in the background when the version exists: its start-up (seconds of imports) overlaps
    the story's next steps; ``result`` waits for it."""

    def __init__(self, sample: pd.DataFrame, version: int, settings: Settings) -> None:
        self._folder = tempfile.TemporaryDirectory()
        rows = Path(self._folder.name) / "rows.json"
        rows.write_text(sample.to_json(orient="records"))
        env = {**os.environ, "HARBOURMASTER_HOME": str(settings.home)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", FRESH_PROCESS_CHECK, str(rows), PROJECT, str(version)],
            cwd=self._folder.name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> list[float]:
        try:
            stdout, stderr = self._process.communicate(timeout=FRESH_PROCESS_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise RuntimeError(f"the fresh process did not answer within {FRESH_PROCESS_SECONDS:g} s") from None
        finally:
            self._folder.cleanup()
        if self._process.returncode != 0:
            raise RuntimeError(f"the fresh process failed:\n{stderr}")
        return json.loads(stdout.strip().splitlines()[-1])
