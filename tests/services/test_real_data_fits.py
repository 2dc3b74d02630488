"""Real data fits (issue 9, points 1-3), on a project shaped like real orders: a date column, an order id the
``prepare`` step drops, a categorical channel, a multi-class and (separately) a regression target.

Trained through the real CLI and services; served by a live replica and scored in batch with dates after the
training window and without the order id; declared facts in ``[schema]``; training data checked before the
training code runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.conftest import make_settings
from tests.faces.test_cli import assert_fails, assert_ok, hm
from tests.services.orders_project import TRAINING_WINDOW, orders_frame, write_orders_project
from tests.serving.test_serving_end_to_end import wait_for

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import DataProblemError, EntrypointError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread

ACTOR = Actor.local_owner()
LATER = "2025-11-28"  # months after the training window
FUTURE_ORDER = {"order_date": LATER, "channel": "web", "amount": 120.0, "items": 3}

TRAINING_CODE_THAT_MUST_NOT_RUN = """
def train(kind="classification"):
    raise RuntimeError("the training code ran on data that should have been refused")
"""


def columns_of(version: Any) -> dict[str, dict[str, Any]]:
    return {column["name"]: column for column in version.input_schema["columns"]}


def assert_refused_before_training(
    platform: Platform, project: Path, *fragments: str, hint: str = "[schema]"
) -> DataProblemError:
    """Training fails with a data problem naming ``fragments``; the project code never ran; nothing registered."""
    (project / "model.py").write_text(TRAINING_CODE_THAT_MUST_NOT_RUN)
    versions_before = _version_count(platform)
    with pytest.raises(DataProblemError) as raised:
        platform.training.train(ACTOR, project)
    for fragment in fragments:
        assert fragment in raised.value.message, raised.value.message
    assert hint in (raised.value.hint or "")
    assert _version_count(platform) == versions_before
    assert platform.training.list_runs(ACTOR, "orders", limit=1)[0].status == "failed"
    return raised.value


def _version_count(platform: Platform) -> int:
    try:
        return platform.registry.get_project(ACTOR, "orders").latest_version or 0
    except NotFoundError:
        return 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The orders project trained by the CLI, deployed to dev with the humility rule on, behind a live replica."""
    root = tmp_path_factory.mktemp("orders")
    home, project = root / "home", write_orders_project(root / "orders")
    trained = assert_ok(hm(home, "train", str(project)))
    platform = Platform(make_settings(home))
    platform.deployments.deploy(ACTOR, "orders", 1, "dev")
    state = platform.deployments.set_options(ACTOR, "orders", "dev", {"humility": {"enabled": True}})
    server = ServerThread(platform, "dev", ReplicaOptions(poll_seconds=0.1, heartbeat_seconds=0.5)).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    wait_for(server, "orders", state.revision)
    yield {"home": home, "root": root, "project": project, "platform": platform, "client": client, "cli": trained}
    client.close()
    server.stop()
    platform.close()


@pytest.mark.slow
def test_the_trained_schema_has_a_date_range_an_ignored_order_id_and_a_closed_channel(served) -> None:
    version = served["platform"].registry.get_version(ACTOR, "orders", 1)
    columns = columns_of(version)
    assert columns["order_date"]["dtype"] == "datetime" and columns["order_date"]["categories"] is None
    assert columns["order_id"]["role"] == "ignored" and columns["order_id"]["required"] is False
    assert columns["channel"]["categories"] == ["phone", "shop", "web"]
    assert version.output_schema["task"] == "classification"
    assert version.output_schema["classes"] == ["high", "low", "mid"]
    assert version.lineage["unread_columns"] == ["order_id"]
    profile = served["platform"].registry.load_version(ACTOR, "orders", 1).manifest.profile
    assert set(profile["features"]) == {"order_date", "channel", "amount", "items"}  # no drift on ids, ever

    shown = assert_ok(hm(served["home"], "show", "orders", "1")).out
    assert f"{TRAINING_WINDOW[0]} .. " in shown and "ignored: not read by the pipeline, optional" in shown


@pytest.mark.slow
def test_a_request_after_the_training_window_without_the_order_id_is_answered_by_the_model(served) -> None:
    client = served["client"]
    answer = client.post("/v1/projects/orders/predict", json=FUTURE_ORDER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["path"], body["version"]) == ("champion", 1) and body["prediction"] in ("high", "low", "mid")

    # a brand-new order id, far beyond the ids seen in training, is not judged by the humility rule
    new_id = client.post("/v1/projects/orders/predict", json={**FUTURE_ORDER, "order_id": 9_999_999})
    assert new_id.status_code == 200 and new_id.json()["path"] == "champion", new_id.text
    # ... while an amount far outside the training range still is
    huge = client.post("/v1/projects/orders/predict", json={**FUTURE_ORDER, "amount": 1e7})
    assert huge.status_code == 503 and huge.json()["reason"] == "humility", huge.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "field", "said"),
    [
        ({"order_date": "2025-02-30"}, "order_date", "expected an ISO 8601 date or timestamp"),
        ({"order_date": "28/11/2025"}, "order_date", "expected an ISO 8601 date or timestamp"),
        ({"channel": "fax"}, "channel", "unseen category 'fax'"),
        ({"amount": "lots"}, "amount", "expected a number, got string"),
    ],
)
def test_bad_fields_are_named(served, change: dict[str, Any], field: str, said: str) -> None:
    refused = served["client"].post("/v1/projects/orders/predict", json={**FUTURE_ORDER, **change})
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert [e["field"] for e in errors] == [field] and said in errors[0]["error"]


@pytest.mark.slow
def test_batch_scoring_takes_dates_after_the_training_window_and_no_order_id(served) -> None:
    rows = orders_frame(rows=40, seed=5).drop(columns=["order_id", "segment", "margin"])
    rows["order_date"] = pd.date_range("2025-07-01", periods=40, freq="D").strftime("%Y-%m-%d")
    source, scored = served["root"] / "later.csv", served["root"] / "later-scored.csv"
    rows.to_csv(source, index=False)
    result = hm(served["home"], "score", "orders", "--env", "dev", "--input", str(source), "--output", str(scored))
    assert_ok(result)
    out = pd.read_csv(scored)
    assert len(out) == 40 and set(out["prediction"]) <= {"high", "low", "mid"}


def test_a_regression_target_with_dates_and_a_dropped_id(platform: Platform, tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "margins", name="margins", target="margin")
    version = platform.training.train(ACTOR, project).version
    assert version.output_schema["task"] == "regression" and set(version.metrics) == {"r2", "rmse", "mae"}
    assert columns_of(version)["order_id"]["role"] == "ignored"
    platform.deployments.deploy(ACTOR, "margins", version.number, "dev")
    rows = pd.DataFrame([{**FUTURE_ORDER, "order_date": day} for day in ("2026-01-01", "2027-06-30T08:00:00")])
    rows.to_csv(tmp_path / "in.csv", index=False)
    run = platform.scoring.score(ACTOR, "margins", "dev", tmp_path / "in.csv", tmp_path / "out.csv")
    assert (run.status, run.rows_out, run.error) == ("succeeded", 2, None)
    assert pd.read_csv(tmp_path / "out.csv")["prediction"].between(0, 500).all()


SCHEMA = """
[schema.order_id]
role = "id"

[schema.channel]
type = "category"
categories = ["web", "shop", "phone", "partner"]

[schema.amount]
type = "float"
min = 0
max = 1000

[schema.order_date]
min = 2023-01-01
"""


def test_declared_facts_shape_the_schema_and_the_checks(platform: Platform, tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "orders", schema=SCHEMA)
    version = platform.training.train(ACTOR, project).version
    columns = columns_of(version)
    assert (columns["order_id"]["role"], columns["order_id"]["required"]) == ("id", False)
    assert columns["channel"]["categories"] == ["web", "shop", "phone", "partner"]
    assert (columns["amount"]["minimum"], columns["amount"]["maximum"], columns["amount"]["range_enforced"]) == (
        0.0,
        1000.0,
        True,
    )
    assert columns["order_date"]["minimum"] == pd.Timestamp("2023-01-01").timestamp()
    assert "unread_columns" not in version.lineage  # the id's role was declared, not found out

    platform.deployments.deploy(ACTOR, "orders", version.number, "dev")
    partner = pd.DataFrame([{**FUTURE_ORDER, "channel": "partner"}])  # declared, never seen in training
    partner.to_csv(tmp_path / "partner.csv", index=False)
    scored = platform.scoring.score(ACTOR, "orders", "dev", tmp_path / "partner.csv", tmp_path / "o.csv")
    assert (scored.status, scored.rows_out) == ("succeeded", 1)
    pd.DataFrame([{**FUTURE_ORDER, "amount": 1500.0}, {**FUTURE_ORDER, "order_date": "2022-12-31"}]).to_csv(
        tmp_path / "bad.csv", index=False
    )
    refused = platform.scoring.score(ACTOR, "orders", "dev", tmp_path / "bad.csv", tmp_path / "o.csv")
    assert refused.status == "failed" and refused.error is not None
    assert "column 'amount': 1 value(s) outside the declared range 0 .. 1000 (first at row 1)" in refused.error
    assert "column 'order_date': 1 value(s) outside the declared range 2023-01-01" in refused.error
    assert refused.validation == "invalid"


def test_a_declared_column_the_data_does_not_have_is_named(platform: Platform, tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "orders", schema='[schema.ammount]\ntype = "float"\n')
    assert_refused_before_training(
        platform, project, "column 'ammount' is declared in [schema] but is not in the data (did you mean 'amount'?)"
    )


def test_data_problems_are_named_before_the_training_code_runs(platform: Platform, tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "orders")
    assert platform.training.train(ACTOR, project).version.number == 1
    model = (project / "model.py").read_text()
    data = project / "data" / "train.csv"
    good = pd.read_csv(data)

    good.drop(columns=["items"]).to_csv(data, index=False)
    assert_refused_before_training(platform, project, "column 'items' is missing: v1 was trained with it")

    text = good.astype({"amount": object})
    text.loc[4, "amount"] = "unknown"  # ("n/a" would be read as a null)
    text.to_csv(data, index=False)
    assert_refused_before_training(
        platform, project, "column 'amount' must hold numbers (as in v1) but holds 'unknown' (row 5)"
    )

    good.assign(segment=None).to_csv(data, index=False)
    assert_refused_before_training(platform, project, "target column 'segment' has no value: all 300 rows are null")

    good.head(20).to_csv(data, index=False)
    refused = assert_refused_before_training(
        platform, project, "too few rows", "(20 with a target): 15 to train on and 5 held out", hint="min_rows (now 30)"
    )
    assert "at least 30 of each are needed ([evaluation] min_rows)" in refused.message
    # two rows of each of the three classes: too few to stratify a split, and said as too few rows
    good.groupby("segment").head(2).to_csv(data, index=False)
    assert_refused_before_training(
        platform, project, "too few rows", "(6 with a target): 4 to train on and 2 held out", hint="min_rows (now 30)"
    )

    # fixed: the real code and enough data train v2; a lower minimum is the project's own call
    (project / "model.py").write_text(model)
    good.to_csv(data, index=False)
    assert platform.training.train(ACTOR, project).version.number == 2
    good.head(20).to_csv(data, index=False)
    toml = project / "harbourmaster.toml"
    toml.write_text(toml.read_text().replace("seed = 1", "seed = 1\nmin_rows = 5"))
    tiny = platform.training.train(ACTOR, project).version
    assert (tiny.number, tiny.evaluation_rows) == (3, 5)


def test_a_key_error_for_a_column_the_data_lacks_says_so(platform: Platform, tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "orders")
    (project / "model.py").write_text(
        "def train(frame, kind='classification'):\n    frame['discount']\n    raise AssertionError('unreachable')\n"
    )
    with pytest.raises(EntrypointError) as raised:
        platform.training.train(ACTOR, project)
    assert "raised KeyError: 'discount': the training data has no column 'discount'" in raised.value.message
    assert "declare the columns the code needs in [schema]" in (raised.value.hint or "")


def test_the_cli_names_a_data_problem(tmp_path: Path) -> None:
    project = write_orders_project(tmp_path / "orders", evaluation="min_rows = 500")
    refused = assert_fails(hm(tmp_path / "home", "train", str(project)), "too few rows", "min_rows")
    assert "training entrypoint" not in refused.err


def test_register_takes_the_same_declarations(sqlite_settings: Settings) -> None:
    training = orders_frame()[["order_id", "amount", "items", "segment"]]
    columns = ColumnTransformer([("numbers", "passthrough", ["amount", "items"])])  # the id is not read
    pipeline = Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))])
    pipeline.fit(training.drop(columns=["segment"]), training["segment"])
    declared = {"order_id": {"role": "id"}, "amount": {"min": 0, "max": 1000}, "segment": {"role": "target"}}

    with Client(settings=sqlite_settings) as client:
        with pytest.raises(InvalidInputError) as raised:
            client.register("orders", pipeline, training, schema={"amount": {"min": 10, "max": 1}})
        assert "schema['amount']: min 10 is greater than max 1" in raised.value.message
        bad = training.astype({"amount": object})
        bad.loc[0, "amount"] = "n/a"
        with pytest.raises(DataProblemError, match="column 'amount' must hold numbers"):
            client.register(
                "orders", pipeline, bad, schema={"amount": {"type": "float"}, "segment": {"role": "target"}}
            )
        version = client.register("orders", pipeline, training, schema=declared)  # the target named by its role
    schema = columns_of(version)
    assert (schema["order_id"]["role"], schema["order_id"]["required"]) == ("id", False)
    assert schema["amount"]["range_enforced"] and "segment" not in schema
