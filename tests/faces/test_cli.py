"""The ``harbourmaster`` command, run for real as a subprocess (``python -m harbourmaster``).

Each subprocess costs a second or two, so the read-only and error cases run
concurrently against one trained home, and each test groups its assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harbourmaster.demo.story import set_param, write_demo_project

PROJECT = "breast-cancer"


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err

    def json(self):
        return json.loads(self.out)


def cli_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    env["COLUMNS"] = "200"  # wide tables: keep names unabridged
    env["NO_COLOR"] = "1"
    return env


def hm(home: Path, *args: str, cwd: Path | None = None) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args],
        env=cli_env(home),
        cwd=cwd or home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = Result(tuple(args), done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.both, f"{args}: a traceback escaped:\n{result.both}"
    return result


def hm_many(home: Path, commands: Sequence[Sequence[str]]) -> list[Result]:
    """Run independent (read-only) commands concurrently; results in order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: hm(home, *args), commands))


def assert_ok(result: Result) -> Result:
    assert result.code == 0, f"{result.args} exited {result.code}:\n{result.both}"
    return result


def assert_fails(result: Result, *fragments: str) -> Result:
    """Exit 1, an 'error:' and a 'hint:' line on stderr, and the expected words."""
    assert result.code == 1, f"{result.args} exited {result.code}:\n{result.both}"
    assert "error:" in result.err, result.both
    assert "hint:" in result.err, result.both
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in stderr of {result.args}:\n{result.err}"
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Result]]:
    """A home with the demo project trained twice through the CLI (text, then --json)."""
    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    project = root / "project"
    write_demo_project(project)
    first = hm(home, "train", str(project))
    set_param(project / "harbourmaster.toml", 1.0)
    second = hm(home, "train", str(project), "--json")
    return home, project, [first, second]


def test_train_registers_versions(trained):
    _home, project, (first, second) = trained
    assert_ok(first)
    assert f"Training {project}" in first.out
    assert f"Registered {PROJECT} v1" in first.out
    assert "569 rows" in first.out
    assert "accuracy" in first.out

    assert_ok(second)
    result = second.json()
    assert result["version"]["project"] == PROJECT
    assert result["version"]["number"] == 2
    assert len(result["version"]["digest"]) == 64
    assert set(result["version"]["metrics"]) == {"accuracy", "roc_auc", "f1"}
    assert result["version"]["lineage"]["parent_version"] == 1
    assert result["version"]["lineage"]["parameters"]["C"] == 1.0
    assert result["run"]["status"] == "succeeded"
    assert result["run"]["version_number"] == 2
    assert result["run"]["rows_in"] == 569


def test_read_commands_text_and_json(trained):
    home, _project, _ = trained
    (
        projects,
        projects_json,
        versions,
        versions_json,
        show,
        show_json,
        show_v1_json,
        diff,
        diff_json,
        runs,
        runs_json,
    ) = hm_many(
        home,
        [
            ["projects"],
            ["projects", "--json"],
            ["versions", PROJECT],
            ["versions", PROJECT, "--json"],
            ["show", PROJECT],
            ["show", PROJECT, "latest", "--json"],
            ["show", PROJECT, "v1", "--json"],
            ["diff", PROJECT, "1", "2"],
            ["diff", PROJECT, "1", "2", "--json"],
            ["runs"],
            ["runs", PROJECT, "--limit", "1", "--json"],
        ],
    )
    for result in (projects, versions, show, diff, runs):
        assert_ok(result)
    assert PROJECT in projects.out
    [project_info] = assert_ok(projects_json).json()
    assert project_info["name"] == PROJECT
    assert project_info["version_count"] == 2
    assert project_info["latest_version"] == 2
    assert project_info["description"].startswith("Malignant or benign")

    assert f"{PROJECT}: 2 version(s)" in versions.out
    assert "roc_auc" in versions.out
    listed = assert_ok(versions_json).json()
    assert [v["number"] for v in listed] == [1, 2]
    assert all(v["format"] == "skops" and len(v["digest"]) == 64 for v in listed)

    assert f"{PROJECT} v2" in show.out
    assert "input schema" in show.out
    assert "mean radius" in show.out
    assert "output: classification" in show.out
    assert "lineage" in show.out
    detail = assert_ok(show_json).json()
    assert detail["number"] == 2
    assert detail["digest"] == listed[1]["digest"]
    assert len(detail["input_schema"]["columns"]) == 30
    assert detail["output_schema"]["task"] == "classification"
    assert detail["output_schema"]["classes"] == [0, 1]
    assert detail["lineage"]["data"]["rows"] == 569
    assert assert_ok(show_v1_json).json()["number"] == 1

    assert f"{PROJECT}: v1 -> v2" in diff.out
    assert "schema: unchanged" in diff.out
    changes = assert_ok(diff_json).json()
    assert (changes["old"], changes["new"]) == (1, 2)
    assert changes["input_changes"] == []
    assert {m["name"] for m in changes["metric_changes"]} == {"accuracy", "roc_auc", "f1"}
    assert "parameters" in changes["lineage_changes"]

    assert "succeeded" in runs.out
    assert PROJECT in runs.out
    [latest_run] = assert_ok(runs_json).json()
    assert latest_run["project"] == PROJECT
    assert latest_run["kind"] == "train"
    assert latest_run["status"] == "succeeded"
    assert latest_run["version_number"] == 2


def test_tag_text_json_and_remove(trained):
    home, _project, _ = trained
    text = assert_ok(hm(home, "tag", PROJECT, "1", "candidate", "owner=ds-team"))
    assert f"{PROJECT} v1 tags:" in text.out
    assert "candidate" in text.out and "ds-team" in text.out

    tagged = assert_ok(hm(home, "tag", PROJECT, "1", "reviewed=yes", "--json")).json()
    assert tagged["number"] == 1
    assert tagged["tags"] == {"candidate": "", "owner": "ds-team", "reviewed": "yes"}

    removed = assert_ok(hm(home, "tag", PROJECT, "1", "candidate", "reviewed", "--remove", "--json")).json()
    assert removed["tags"] == {"owner": "ds-team"}


def test_bad_input_fails_with_error_and_hint(trained, tmp_path):
    home, _project, _ = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "harbourmaster.toml").write_text('[project]\nname = "broken\n[data]\n')
    no_pipeline = tmp_path / "no-pipeline"
    no_pipeline.mkdir()
    (no_pipeline / "harbourmaster.toml").write_text('[project]\nname = "x"\n[data]\nsource = "d.csv"\ntarget = "y"\n')
    missing = tmp_path / "no-such-folder"
    (
        missing_dir,
        malformed,
        incomplete,
        unknown_project,
        unknown_version,
        bad_version,
        diff_unknown,
        untag_unknown,
    ) = hm_many(
        home,
        [
            ["train", str(missing)],
            ["train", str(broken)],
            ["train", str(no_pipeline)],
            ["versions", "nope"],
            ["show", PROJECT, "99"],
            ["show", PROJECT, "abc"],
            ["diff", PROJECT, "1", "42", "--json"],
            ["tag", PROJECT, "1", "never-set", "--remove"],
        ],
    )
    assert_fails(missing_dir, "does not exist")
    assert_fails(malformed, "not valid TOML")
    assert_fails(incomplete, "[pipeline]: section required", "add a [pipeline] table")  # brackets survive rich
    assert_fails(unknown_project, "no project named 'nope'", PROJECT)  # the hint lists known projects
    assert_fails(unknown_version, "has no version 99", f"harbourmaster versions {PROJECT}")
    assert_fails(bad_version, "'abc' is not a version")
    assert_fails(diff_unknown, "has no version 42")
    assert diff_unknown.out == ""  # nothing half-printed for scripts reading stdout
    assert_fails(untag_unknown, "no tag 'never-set'")


def test_init_prints_a_token_once_then_refuses(tmp_path):
    home = tmp_path / "home"
    first = assert_ok(hm(home, "init", "--admin", "alice"))
    assert "Created admin user 'alice'" in first.out
    token = first.out.strip().splitlines()[-1]
    assert token.startswith("hm_") and len(token) > 30

    assert "steps that need a second one" in first.err

    second = hm(home, "init")
    assert_fails(second, "already has users")
    assert token not in second.both

    # Two admins at once: each token printed once, each a real credential.
    both = assert_ok(hm(tmp_path / "other", "init", "--admin", "alice", "--admin", "bob"))
    assert "Created admin user 'alice'" in both.out and "Created admin user 'bob'" in both.out
    assert len([line for line in both.out.splitlines() if line.startswith("hm_")]) == 2
    assert "second one" not in both.err

    # The printed token is a real credential of that store.
    from harbourmaster.config import Settings
    from harbourmaster.services.platform import Platform

    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        actor = platform.identity.authenticate(token)
    finally:
        platform.close()
    assert actor.name == "alice"
    assert "admin" in actor.roles


def test_empty_store_and_help(tmp_path):
    home = tmp_path / "home"
    empty, empty_json, no_args = hm_many(home, [["projects"], ["projects", "--json"], []])
    assert "No projects yet" in assert_ok(empty).out
    assert assert_ok(empty_json).json() == []
    # no_args_is_help: usage, not a crash
    assert "train" in no_args.both and "versions" in no_args.both
