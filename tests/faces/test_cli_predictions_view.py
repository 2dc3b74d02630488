"""``harbourmaster predictions``: a readable default, the rest behind --columns/--json, no duplicate columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_inprocess import Outcome, invoke
from harbourmaster.config import Settings
from harbourmaster.demo.story import write_demo_project
from harbourmaster.services.platform import Platform
from harbourmaster.serving.capture import Captured, CaptureWriter, now_us
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.prediction_log import PREDICTION_SCHEMA

PROJECT = "breast-cancer"


def ok(outcome: Outcome) -> Outcome:
    assert outcome.crash is None, outcome.crash
    assert outcome.code == 0, f"{outcome.argv} exited {outcome.code}:\n{outcome.out}{outcome.err}"
    return outcome


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A trained project whose log holds, written by the replica's capture writer, two answers and a refusal."""
    root = tmp_path_factory.mktemp("predictions")
    frame = write_demo_project(root / "project")
    records = frame.drop(columns=["malignant"]).head(2).to_dict(orient="records")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARBOURMASTER_HOME", str(root / "home"))
        patch.delenv("HARBOURMASTER_DATABASE_URL", raising=False)
        patch.chdir(root)
        ok(invoke(["train", "project"]))
        platform = Platform(Settings.from_env())
        try:
            writer = CaptureWriter(
                platform.artifacts, ServingMetrics("dev"), spool_dir=root / "spool", environment="dev", replica="r1"
            )
            answered = Captured(
                now_us(), "req-answered", PROJECT, 1, "champion", None, 200, 2.5, records, [1, 0],
                [{"0": 0.1, "1": 0.9}, {"0": 0.8, "1": 0.2}],
            )  # fmt: skip
            refused = Captured(
                now_us(), "req-refused", PROJECT, None, "refused", "invalid_input", 422, 0.2, [], None, None
            )
            writer.submit(answered)
            writer.submit(refused)
            writer.close()
        finally:
            platform.close()
        yield root


def test_default_view_is_a_few_key_columns_with_inputs_summarised(logged: Path) -> None:
    shown = ok(invoke(["predictions", PROJECT, "--env", "dev"])).out
    header = next(line for line in shown.splitlines() if "request" in line and "inputs" in line)
    for column in ("ts", "request", "version", "path", "status", "output", "reason", "inputs"):
        assert column in header
    for hidden in ("probabilities", "replica", "shadow_output", "environment"):
        assert hidden not in header
    assert "mean radius=" in shown and "+27 more" in shown  # 30 fields summarised as three and a count
    assert "worst fractal dimension" not in shown
    assert "invalid_input" in shown  # the refusal's reason
    assert "nan" not in shown and "None" not in shown  # a normal answer's reason is empty
    assert "2 predictions logged for breast-cancer in dev; 1 refused request(s) below, not counted" in shown
    assert "--columns" in shown and "--json" in shown  # says where the rest is


def test_columns_and_json_give_the_rest_without_duplicates(logged: Path) -> None:
    picked = ok(invoke(["predictions", PROJECT, "--columns", "request_id,probabilities,reason"])).out
    header = next(line for line in picked.splitlines() if "request_id" in line)
    assert "probabilities" in header and "inputs" not in header
    assert '{"0":0.1,"1":0.9}' in picked

    rows = json.loads(ok(invoke(["predictions", PROJECT, "--json"])).out)
    assert len(rows) == 3  # two answered records and one refused request
    for row in rows:
        assert list(row) == PREDICTION_SCHEMA.names  # no env=/project=/date= partition columns added
    answered = [row for row in rows if row["path"] == "champion"]
    assert all(row["reason"] is None for row in answered)
    assert json.loads(answered[0]["inputs"])["mean radius"] > 0

    refused = invoke(["predictions", PROJECT, "--columns", "request_id,colour"])
    assert refused.code == 1 and "no column named 'colour'" in refused.err and "probabilities" in refused.err
