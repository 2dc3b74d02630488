"""Every CLI command, swept with bad input: a clear message, a non-zero exit, never a traceback.

The commands and their parameters are read from the Typer app itself, so a new command or a new
parameter joins the sweep on its own; a parameter with no bad value to try (free text such as a
comment) must be named in ``FREE_TEXT`` so that forgetting one is a failure, not a silent gap.
The commands run in this process (``run(argv)``, the console entry point) against a real embedded
store, which keeps the few hundred invocations fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from cli_inprocess import invoke
from harbourmaster.cli.main import app
from harbourmaster.demo.story import write_demo_project

PROJECT = "breast-cancer"

# A good value for each parameter a command requires, so that exactly one parameter is bad at a time.
GOOD: dict[str, str] = {
    "project": PROJECT,
    "version": "1",
    "old": "1",
    "new": "1",
    "tags": "reviewed",
    "to": "test",
    "env": "dev",
    "name": "someone",
    "role": "viewer",
    "request_id": "1",
    "token_id": "1",
    "credential_id": "1",
    "project_dir": "project",
    "path": "export.jsonl",
    "config_file": "environment.json",
    "alert_id": "1",
    "run_id": "1",
    "for_": "1h",
    "kind": "webhook",
    "case_id": "1",
    "rollout_id": "1",
    "reason": "the sweep",
}

# Bad values by parameter name: each one is wrong in a way the command must name.
BAD: dict[str, list[str]] = {
    "project": ["no-such-project"],
    "version": ["999", "seven"],
    "old": ["999", "seven"],
    "new": ["999"],
    "to": ["nowhere", "999"],
    "env": ["nowhere"],
    "project_dir": ["missing-folder", "broken-toml", "a-file.txt"],
    "data": ["missing.csv", "broken.json"],
    "limit": ["many", "0"],
    "port": ["http", "0"],
    "workers": ["0"],
    "home": ["a-file.txt"],
    "canary": ["late", "250"],
    "at": ["yesterday"],
    "since": ["yesterday"],
    "unknown_fields": ["sometimes"],
    "latency_budget_ms": ["late", "-5"],
    "max_batch": ["late", "0"],
    "max_wait_ms": ["late", "-1"],
    "humility_margin": ["late", "-1"],
    "mode": ["sideways"],
    "weight": ["late", "150"],
    "failover": ["999", "seven"],
    "rules": ["missing.json", "broken.json", "list.json"],
    "default": ["late", "{"],
    "function": ["no_colon"],
    "input": ["missing.csv", "broken.json"],
    "output_path": ["no-folder/scored.csv"],
    "sql": ["SELEKT 1"],
    "columns": ["no_such_column", ","],
    "file": ["code/missing.py"],
    "add_type": ["not a type"],
    "remove_type": ["not a type"],
    "role": ["emperor"],
    "permission": ["everything"],
    "request_id": ["999", "first"],
    "token_id": ["999", "first"],
    "credential_id": ["999", "first"],
    "max_lifetime": ["later"],
    "expires_in_days": ["week", "0"],
    "last": ["many", "0"],
    "mix_training": ["half", "2"],
    "expires_in": ["later", "0m", "5 fortnights"],
    "format": ["xml"],
    "out": ["no-folder/out.txt"],
    "path": ["missing.jsonl", "broken.json"],
    "public_key": ["missing.pem", "broken.json"],
    "config_file": ["missing.json", "broken.json", "list.json"],
    "position": ["first", "-3"],
    "user": ["nobody-here"],
    "tags": ["=no-key"],
    "admin": ["bad name!", ""],  # refused before the store is touched, so the sweep's home stays embedded
    "save_tokens": ["a-file.txt"],  # likewise refused before the store is touched
    "alert_id": ["999", "first"],
    "run_id": ["999", "first", "0"],
    "for_": ["3 parsecs", "0m", "later"],
    "timeout": ["-5", "soon"],
    "window": ["yesterday", "0"],
    "method": ["sideways", "no_such_feature=ks", "=ks"],
    "threshold": ["abc", "no_such_feature=0.1", "-1"],
    "drift_share": ["2", "lots"],
    "reference_version": ["999", "0", "seven"],
    "feature": ["no_such_feature"],
    "kind": ["carrier-pigeon"],
    "webhook": ["ftp://example.com/hook", "not a url", "https://", "http://hooks.example.com:abc/x", "http://h:99999/"],
    "min_severity": ["apocalyptic"],
    "output_file": ["no-folder/rules.yml"],
    "rate": ["fast", "0"],
    "strategy": ["rolling"],
    "steps": ["5,fifty", "50,25", "0"],
    "bake": ["soon", "-1m"],
    "shadow_for": ["long"],
    "decide": ["maybe"],
    "min_requests": ["few", "0"],
    "rollout_id": ["999", "first"],
    "duration": ["long", "-1"],
    "headroom": ["lots", "0"],
    "floor": ["low", "0"],
    "connections": ["many", "0"],
    "case_id": ["999", "first"],
    "poll": ["soon", "0"],
    "lease": ["long", "0", "999999"],
}

# Parameters where any value is acceptable (free text, flags), or (--host) where only binding would tell.
# Commands that start servers (server, serve, demo) get only values refused before anything starts.
FREE_TEXT = {
    "url",
    "token",
    "json",
    "version_flag",
    "comment",
    "sticky_key",
    "name",
    "host",
    "remove",
    "shadow",
    "check",
    "microbatch",
    "humility",
    "clear",
    "all",
    "all_",
    "wait",
    "history",
    "once",
    "no_failover",
    "reason",
    "active",
}


def commands() -> Iterator[tuple[tuple[str, ...], object]]:
    """Every leaf command of the app, with its path of names (``("users", "add")``)."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
        children = getattr(command, "commands", None)
        if children is None:
            yield path, command
            return
        for name, child in children.items():
            yield from walk(child, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def argv_for(path: tuple[str, ...], command: object, bad_param: str, bad_value: str) -> list[str]:
    argv = list(path)
    for param in command.params:  # type: ignore[attr-defined]
        value = bad_value if param.name == bad_param else GOOD.get(param.name) if param.required else None
        if value is None:
            continue
        if param.param_type_name == "argument":
            argv.append(value)
        else:
            argv.extend([param.opts[0], value])
    return argv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with a trained demo project and a few broken files, used as the current directory."""
    root = tmp_path_factory.mktemp("sweep")
    write_demo_project(root / "project")
    (root / "broken-toml").mkdir()
    (root / "broken-toml" / "harbourmaster.toml").write_text("[project\nname = ")
    (root / "a-file.txt").write_text("not a folder")
    (root / "broken.json").write_text('{"rules": [')
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "environment.json").write_text("{}")
    (root / "export.jsonl").write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARBOURMASTER_HOME", str(root / "home"))
        for key in ("HARBOURMASTER_URL", "HARBOURMASTER_TOKEN", "HARBOURMASTER_DATABASE_URL"):
            patch.delenv(key, raising=False)
        patch.chdir(root)
        trained = invoke(["train", "project"])
        assert trained.code == 0, trained
        # Deployed in dev, so that options checked after "is it deployed?" (drift's) meet their own checks.
        deployed = invoke(["deploy", PROJECT, "1", "--no-wait"])
        assert deployed.code == 0, deployed
        yield root


def test_the_sweep_knows_every_parameter() -> None:
    """A new parameter must get bad values to try, or be declared free text."""
    unknown = {
        f"{' '.join(path)} {param.name}"
        for path, command in commands()
        for param in command.params  # type: ignore[attr-defined]
        if param.name not in BAD and param.name not in FREE_TEXT
    }
    assert not unknown, f"give these parameters bad values in BAD, or list them in FREE_TEXT: {sorted(unknown)}"


def test_every_command_refuses_bad_input_without_a_traceback(workspace: Path) -> None:
    failures: list[str] = []
    tried = 0
    for path, command in commands():
        for param in command.params:  # type: ignore[attr-defined]
            for value in BAD.get(param.name, []):
                argv = argv_for(path, command, param.name, value)
                outcome = invoke(argv)
                tried += 1
                text = outcome.out + outcome.err
                if outcome.crash:
                    failures.append(f"{argv}: raised\n{outcome.crash}")
                elif "Traceback" in text:
                    failures.append(f"{argv}: printed a traceback\n{text}")
                elif outcome.code in (0, None):
                    failures.append(f"{argv}: exit 0 for a bad value\n{text}")
                elif not outcome.err.strip():
                    failures.append(f"{argv}: exit {outcome.code} without a message on stderr\n{text}")
    assert tried > 100
    assert not failures, f"{len(failures)} of {tried} bad inputs mishandled:\n\n" + "\n\n".join(failures)
