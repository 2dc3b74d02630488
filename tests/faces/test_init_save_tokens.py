"""``harbourmaster init --save-tokens FOLDER``: each first admin's token in FOLDER/NAME.token, owner-only,
never overwritten; a refused init changes nothing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harbourmaster.cli.main import app
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform


def test_init_saves_each_admins_token_for_its_owner_only(isolated_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "tokens"
    done = runner.invoke(app, ["init", "--admin", "alice", "--admin", "bob", "--save-tokens", str(folder)])
    assert done.exit_code == 0, done.output
    assert "hm_" not in done.output  # saved, not printed
    assert f"Its API token is in {folder / 'alice.token'}" in done.output

    assert folder.stat().st_mode & 0o777 == 0o700
    platform = Platform(Settings.from_env())
    try:
        for name in ("alice", "bob"):
            saved = folder / f"{name}.token"
            assert saved.stat().st_mode & 0o777 == 0o600
            assert platform.identity.authenticate(saved.read_text().strip()).name == name
    finally:
        platform.close()


def test_init_refuses_to_overwrite_a_token_file_and_changes_nothing(isolated_env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tokens"
    folder.mkdir()
    (folder / "bob.token").write_text("somebody's token\n")
    refused = CliRunner().invoke(app, ["init", "--admin", "alice", "--admin", "bob", "--save-tokens", str(folder)])
    assert refused.exit_code != 0
    assert "already exist" in str(refused.exception)
    assert (folder / "bob.token").read_text() == "somebody's token\n"
    assert not (folder / "alice.token").exists()
    platform = Platform(Settings.from_env())
    try:
        assert not platform.identity.has_users()  # the store is still a sandbox
    finally:
        platform.close()
