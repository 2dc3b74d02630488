"""Dates as ranges, column roles, optional columns and declared facts: inference, the [schema] section,
request validation and the training-data checks, on real frames (no project code)."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from harbourmaster.core.data_checks import check_row_counts, check_training_data
from harbourmaster.core.declared_schema import apply_declarations, parse_declarations
from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.core.schema import diff_input_schemas, infer_input_schema
from harbourmaster.core.timestamps import parse_timestamp
from harbourmaster.core.validation import Validator
from harbourmaster.errors import InvalidInputError, ProjectFileError

BASE = """
[project]
name = "orders"
[data]
source = "data/train.csv"
target = "segment"
[pipeline]
train = "model:train"
"""


def _orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [101, 102, 103, 104],
            "order_date": ["2024-01-05", "2024-02-10", None, "2024-06-30"],
            "stamp": ["2024-01-05T09:30:00Z", "2024-01-05 10:00", "2024-01-06T11:00:00+01:00", "2024-01-07"],
            "code": ["2024", "2025", "2026", "2027"],  # years as text are not dates
            "channel": ["web", "shop", "web", "phone"],
            "amount": [10.0, 20.5, 30.0, 40.0],
        }
    )


def _spec(extra: str):
    return parse_project_spec(tomllib.loads(BASE + extra), "harbourmaster.toml")


def _spec_error(extra: str) -> ProjectFileError:
    with pytest.raises(ProjectFileError) as raised:
        _spec(extra)
    return raised.value


def test_iso_dates_and_timestamps_are_datetime_ranges_not_categories() -> None:
    by = {c.name: c for c in infer_input_schema(_orders()).columns}
    assert by["order_date"].dtype == "datetime" and by["order_date"].categories is None
    assert by["order_date"].nullable
    assert by["order_date"].minimum == pd.Timestamp("2024-01-05").timestamp()
    assert by["order_date"].maximum == pd.Timestamp("2024-06-30").timestamp()
    assert by["stamp"].dtype == "datetime"
    assert by["stamp"].minimum == pd.Timestamp("2024-01-05T09:30:00Z").timestamp()
    assert by["code"].dtype == "string" and by["code"].categories == ["2024", "2025", "2026", "2027"]
    assert by["channel"].categories == ["phone", "shop", "web"]


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2026-03-01", True),
        ("2026-03-01T09:30:00Z", True),
        ("2026-03-01 09:30", True),
        ("2026-03-01T09:30:00.123456789+02:00", True),
        ("2026-02-30", False),
        ("2026-13-01", False),
        ("01/03/2026", False),
        ("2026", False),
        ("tomorrow", False),
    ],
)
def test_what_counts_as_a_date(text: str, valid: bool) -> None:
    assert (parse_timestamp(text) is not None) is valid


def test_a_request_dated_after_the_training_window_is_valid_and_a_bad_date_is_named() -> None:
    schema = infer_input_schema(_orders().drop(columns=["stamp", "code"])).model_dump(mode="json")
    validator = Validator(schema)
    later = {"order_id": 999_999, "order_date": "2031-12-24", "channel": "web", "amount": 12.0}
    assert validator.check([later]) == []
    errors = validator.check([{**later, "order_date": "2031-02-30"}, {**later, "order_date": 20311224}])
    assert [(e["record"], e["field"]) for e in errors] == [(0, "order_date"), (1, "order_date")]
    assert "expected an ISO 8601 date or timestamp" in errors[0]["error"] and "'2031-02-30'" in errors[0]["error"]


def test_an_unread_column_is_ignored_optional_and_left_out_of_checks() -> None:
    frame = _orders().drop(columns=["stamp", "code"])
    schema = apply_declarations(infer_input_schema(frame), frame, {}, unused=["order_id"])
    order_id = schema.column("order_id")
    assert order_id is not None
    assert (order_id.role, order_id.required, order_id.minimum, order_id.maximum) == ("ignored", False, None, None)
    assert schema.features == ["order_date", "channel", "amount"]
    validator = Validator(schema.model_dump(mode="json"))
    assert validator.check([{"order_date": "2030-01-01", "channel": "web", "amount": 1.0}]) == []
    missing = validator.check([{"order_id": 7, "channel": "web", "amount": 1.0}])
    assert missing == [{"record": 0, "field": "order_date", "error": "missing"}]


def test_declarations_override_type_role_range_categories_and_nullability() -> None:
    frame = _orders().drop(columns=["stamp"])
    declared = _spec(
        """
[schema.order_id]
role = "id"
[schema.code]
type = "string"
[schema.channel]
type = "category"
categories = ["web", "shop", "phone", "partner"]
[schema.amount]
min = 0
max = 100
nullable = true
optional = true
[schema.order_date]
min = 2024-01-01
max = "2025-12-31"
"""
    ).declarations
    schema = apply_declarations(infer_input_schema(frame), frame, declared)
    by = {c.name: c for c in schema.columns}
    assert (by["order_id"].role, by["order_id"].required) == ("id", False)
    assert by["code"].dtype == "string" and by["code"].categories is None  # free text: no closed list
    assert by["channel"].dtype == "category" and by["channel"].categories == ["web", "shop", "phone", "partner"]
    assert (by["amount"].minimum, by["amount"].maximum, by["amount"].range_enforced) == (0.0, 100.0, True)
    assert by["amount"].nullable and not by["amount"].required
    assert by["order_date"].range_enforced and by["order_date"].maximum == pd.Timestamp("2025-12-31").timestamp()

    validator = Validator(schema.model_dump(mode="json"))
    ok = {"order_id": 1, "order_date": "2025-06-01", "code": "free text", "channel": "partner"}
    assert validator.check([ok]) == []  # amount optional, channel a declared category never seen in training
    errors = validator.check([{**ok, "amount": 250.0, "order_date": "2026-01-02"}])
    assert {e["field"]: e["error"] for e in errors} == {
        "amount": "outside the declared range 0 .. 100",
        "order_date": "outside the declared range 2024-01-01T00:00:00+00:00 .. 2025-12-31T00:00:00+00:00",
    }


def test_a_declared_range_that_narrows_is_a_breaking_change_and_an_optional_column_is_not() -> None:
    frame = _orders().drop(columns=["stamp", "code"])
    before = infer_input_schema(frame)
    after = apply_declarations(
        before, frame, parse_declarations({"amount": {"min": 15}, "order_id": {"optional": True}})
    )
    changes = {(c.column, c.change): c.breaking for c in diff_input_schemas(before, after)}
    assert changes == {("amount", "range"): True, ("order_id", "required"): False}
    back = {(c.column, c.change): c.breaking for c in diff_input_schemas(after, before)}
    assert back[("order_id", "required")] is True


@pytest.mark.parametrize(
    ("extra", "problem", "hint"),
    [
        ('[schema.d]\ntype = "date"\n', "[schema.d] type: unknown type 'date'", "integer, float, boolean, string"),
        ('[schema.d]\nrole = "key"\n', "[schema.d] role: unknown role 'key'", "feature, id, ignored, target"),
        ("[schema.d]\nmin = 5\nmax = 1\n", "[schema.d]: min 5 is greater than max 1", "swap them"),
        ("[schema.d]\nmin = 2025-01-01\nmax = 2024-01-01\n", "min 2025-01-01 is greater than max 2024-01-01", "swap"),
        ('[schema.d]\ntype = "integer"\nmin = 2024-01-01\n', "min = 2024-01-01 is not a number but", "min = 0"),
        ('[schema.d]\ntype = "string"\nmin = 1\n', "a string column has no range", "remove min and max"),
        ('[schema.d]\ntype = "datetime"\nmin = 3\n', "min = 3 is a number but the column is a datetime", "date"),
        ('[schema.d]\nmin = "soon"\n', "neither a number nor an ISO 8601 date", "2024-01-01"),
        ('[schema.d]\nrole = "id"\nmin = 1\n', "role 'id' is not used by the pipeline", "remove min"),
        ("[schema.d]\ncategories = []\n", "[schema.d] categories: the list is empty", "list the allowed values"),
        ('[schema.d]\ncategories = ["a", "a"]\n', "categories repeats 'a'", "once"),
        ('[schema.d]\nrolle = "id"\n', "[schema.d] rolle: unknown key", "did you mean 'role'?"),
        ("[schema]\nd = 5\n", "[schema.d]: expected a table", "[schema.d]"),
        ('[schema.other]\nrole = "target"\n', "role = 'target' but [data] target is 'segment'", "change [data]"),
        ('[schema.segment]\nrole = "id"\n', "[schema.segment] role = 'id' but 'segment' is the [data] target", ""),
        ("[evaluation]\nmin_rows = 0\n", "[evaluation] min_rows", "min_rows"),
    ],
)
def test_the_schema_section_is_validated_with_clear_errors(extra: str, problem: str, hint: str) -> None:
    error = _spec_error(extra)
    assert problem in error.message and error.message.startswith("harbourmaster.toml: ")
    assert hint in (error.hint or "")


def test_register_declarations_are_validated_the_same_way() -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_declarations({"amount": {"type": "number"}})
    assert "schema['amount'].type" in raised.value.message and "float" in (raised.value.hint or "")
    with pytest.raises(InvalidInputError, match="not in the training data \\(did you mean 'amount'\\?\\)"):
        frame = _orders()
        apply_declarations(infer_input_schema(frame), frame, parse_declarations({"amount_eur": {"min": 0}}))


def test_training_data_problems_are_named_by_column() -> None:
    frame = _orders().assign(segment=["a", "b", "a", "b"])
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[2, "amount"] = "n/a"
    declared = parse_declarations(
        {
            "amount": {"type": "float"},
            "channel": {"categories": ["web", "shop"]},
            "order_date": {"nullable": False},
            "discount": {"type": "float"},
            "legacy": {"role": "ignored"},  # ignored columns may be absent
            "order_id": {"max": 103},  # a range without a type: checked as the data's own type
            "stamp": {"min": "2024-01-06"},
        }
    )
    problems = check_training_data(frame, "segment", declared)
    assert problems == [
        "column 'discount' is declared in [schema] but is not in the data",
        "column 'order_id' holds values outside its declared range (<= 103): 104 (row 4)",
        "column 'order_date' is declared nullable = false but has 1 null(s), e.g. row 3",
        "column 'stamp' holds values outside its declared range (>= 2024-01-06): "
        "'2024-01-05T09:30:00Z' (row 1), '2024-01-05 10:00' (row 2)",
        "column 'channel' holds values outside its declared categories: 'phone' (row 4)",
        "column 'amount' must hold numbers (as declared in [schema]) but holds 'n/a' (row 3)",
    ]


def test_training_data_is_checked_against_the_previous_version_and_the_target() -> None:
    previous = infer_input_schema(_orders())
    changed = _orders().drop(columns=["channel"]).assign(segment=[None] * 4)
    changed["amount"] = ["1", "2", "lots", "4"]
    problems = check_training_data(changed, "segment", {}, previous, previous_label="v3")
    assert problems == [
        "column 'channel' is missing: v3 was trained with it",
        "target column 'segment' has no value: all 4 rows are null",
        "column 'amount' must hold numbers (as in v3) but holds 'lots' (row 3)",
    ]
    assert check_training_data(_orders().assign(segment=1), "segment", {}, previous) == []


def test_too_few_rows_on_either_side_of_the_split() -> None:
    assert check_row_counts(120, 30, 30) is None
    problem = check_row_counts(3, 2, 30)
    assert problem is not None and "3 to train on and 2 held out" in problem and "[evaluation] min_rows" in problem


def test_a_missing_optional_numeric_field_reaches_the_model_as_a_null() -> None:
    from harbourmaster.bundle.predictor import Batch

    batch = Batch([{"a": 1.0}, {"a": 2.0, "b": 3.0}], ["a", "b"], numeric=True)
    assert batch.matrix is not None and np.isnan(batch.matrix[0, 1]) and batch.matrix[1, 1] == 3.0


def test_dates_sent_as_text_fall_into_the_bins_of_a_date_profile() -> None:
    from harbourmaster.core.profile import NumericProfile, bin_fractions_for, build_profile

    days = pd.Series(pd.date_range("2024-01-01", periods=100, freq="D"))
    profile = build_profile(pd.DataFrame({"day": days})).features["day"]
    assert isinstance(profile, NumericProfile)
    later = pd.Series(["2024-02-01", "2030-01-01", None, "not a date"], dtype=object)
    fractions = bin_fractions_for(later, profile)
    assert sum(fractions) == pytest.approx(1.0) and fractions[-1] == pytest.approx(0.5)
