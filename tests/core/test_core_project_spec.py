"""Tests for harbourmaster.core.project_spec."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harbourmaster.core.project_spec import ProjectSpec, parse_entrypoint, parse_project_spec
from harbourmaster.errors import ProjectFileError

SOURCE = "harbourmaster.toml"


def _minimal() -> dict[str, Any]:
    return {
        "project": {"name": "churn"},
        "data": {"source": "data/train.csv", "target": "churned"},
        "pipeline": {"train": "train:train_model"},
    }


def _error(data: dict[str, Any]) -> ProjectFileError:
    with pytest.raises(ProjectFileError) as info:
        parse_project_spec(data, SOURCE)
    assert info.value.message.startswith(f"{SOURCE}: ")
    assert info.value.hint
    return info.value


def _with(section: str, **values: Any) -> dict[str, Any]:
    data = copy.deepcopy(_minimal())
    data.setdefault(section, {}).update(values)
    return data


def test_minimal_spec_defaults() -> None:
    spec = parse_project_spec(_minimal(), SOURCE)
    assert isinstance(spec, ProjectSpec)
    assert spec.project.name == "churn" and spec.project.description == ""
    assert spec.data.kind == "file" and spec.data.url is None
    assert spec.pipeline.prepare is None and spec.pipeline.params == {}
    assert spec.pipeline.train_entrypoint() == ("train", "train_model")
    assert spec.pipeline.prepare_entrypoint() is None
    assert spec.evaluation.metrics is None
    assert (spec.evaluation.holdout, spec.evaluation.seed, spec.evaluation.stratify) == (
        0.2,
        0,
        True,
    )
    assert spec.serialization.format == "skops"
    assert spec.serialization.trust_pickle is False and spec.serialization.trusted_types == []
    assert spec.environments == {}


def test_full_spec() -> None:
    data = {
        "project": {"name": "churn-model_2", "description": "Churn"},
        "data": {
            "url": "postgresql://db/warehouse",
            "query": "SELECT * FROM customers",
            "target": "churned",
        },
        "pipeline": {
            "train": "pkg.train:fit",
            "prepare": "pkg.prep:clean",
            "params": {"C": 1.0, "penalty": "l2", "nested": {"a": [1, 2]}},
        },
        "evaluation": {"metrics": ["accuracy", "roc_auc"], "holdout": 0.3, "seed": 7},
        "serialization": {
            "format": "pickle",
            "trust_pickle": True,
            "trusted_types": ["mypkg.transformers.Clipper"],
        },
    }
    spec = parse_project_spec(data, SOURCE)
    assert spec.data.kind == "sql"
    assert spec.pipeline.prepare_entrypoint() == ("pkg.prep", "clean")
    assert spec.pipeline.params["nested"] == {"a": [1, 2]}
    assert spec.evaluation.metrics == ["accuracy", "roc_auc"]
    assert ProjectSpec.model_validate(spec.model_dump()) == spec


def test_missing_target() -> None:
    data = _minimal()
    del data["data"]["target"]
    err = _error(data)
    assert err.message == "harbourmaster.toml: [data] target: field required"
    assert err.hint == 'add target = "<column>" under [data]'


def test_missing_sections() -> None:
    err = _error({"project": {"name": "x"}})
    assert "[data]: section required" in err.message
    assert "[pipeline]: section required" in err.message
    assert "add a [data] table" in (err.hint or "")


def test_unknown_key_lists_allowed_keys() -> None:
    err = _error(_with("data", taget="y"))
    assert "[data] taget: unknown key" in err.message
    hint = err.hint or ""
    assert "did you mean 'target'" in hint
    assert "allowed keys under [data]: source, url, query, target" in hint


def test_unknown_top_level_key() -> None:
    data = _minimal()
    data["evaluaton"] = {}
    err = _error(data)
    assert "harbourmaster.toml: evaluaton: unknown key" in err.message
    assert "did you mean 'evaluation'" in (err.hint or "")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("train", "not of the form module:function"),
        ("train:", "not of the form module:function"),
        ("my-module:fit", "not a dotted Python name"),
        ("train:fit-model", "not a Python identifier"),
        ("pkg..mod:fit", "not a dotted Python name"),
        ("class:fit", "not a dotted Python name"),
    ],
)
def test_bad_entrypoint(value: str, fragment: str) -> None:
    err = _error(_with("pipeline", train=value))
    assert "[pipeline] train: " in err.message and fragment in err.message
    assert "module:function" in (err.hint or "")


def test_bad_prepare_entrypoint() -> None:
    err = _error(_with("pipeline", prepare="nocolon"))
    assert "[pipeline] prepare:" in err.message


def test_both_source_and_query() -> None:
    err = _error(_with("data", url="sqlite://", query="SELECT 1"))
    assert "[data]: both source and query are set" in err.message
    assert "not both" in (err.hint or "")


def test_neither_source_nor_query() -> None:
    data = _minimal()
    del data["data"]["source"]
    err = _error(data)
    assert "neither source nor query" in err.message


def test_query_without_url_and_url_with_source() -> None:
    data = _minimal()
    data["data"] = {"query": "SELECT 1", "target": "y"}
    err = _error(data)
    assert "query needs a database url" in err.message
    assert "url =" in (err.hint or "")
    err = _error(_with("data", url="sqlite://"))
    assert "url is only used with query" in err.message


def test_source_must_be_csv_or_parquet() -> None:
    err = _error(_with("data", source="data/train.xlsx"))
    assert "[data] source: 'data/train.xlsx' is neither a .csv nor a .parquet file" in err.message
    for ok in ("a.parquet", "a.PQ", "dir/a.CSV"):
        assert parse_project_spec(_with("data", source=ok), SOURCE).data.source == ok


def test_empty_target() -> None:
    err = _error(_with("data", target=""))
    assert "[data] target: must not be empty" in err.message


@pytest.mark.parametrize("holdout", [0, 0.0, 0.9, 1.5, -0.1])
def test_holdout_out_of_range(holdout: float) -> None:
    err = _error(_with("evaluation", holdout=holdout))
    assert f"[evaluation] holdout: {float(holdout)} is out of range" in err.message
    assert "greater than 0 and less than 0.9" in (err.hint or "")


def test_holdout_wrong_type_is_not_coerced() -> None:
    err = _error(_with("evaluation", holdout="0.5"))
    assert "[evaluation] holdout:" in err.message and "'0.5'" in err.message


def test_seed_must_be_non_negative_int() -> None:
    assert "[evaluation] seed" in _error(_with("evaluation", seed=-1)).message
    assert "[evaluation] seed" in _error(_with("evaluation", seed=True)).message


def test_unknown_metric() -> None:
    err = _error(_with("evaluation", metrics=["accuracy", "acuracy"]))
    assert "[evaluation] metrics: unknown metric 'acuracy'" in err.message
    assert "did you mean 'accuracy'" in (err.hint or "")


def test_bad_project_name() -> None:
    for name in ("Churn", "-churn", "a" * 64, "churn model", ""):
        err = _error(_with("project", name=name))
        assert "[project] name:" in err.message
        assert "lowercase" in (err.hint or "")
    assert parse_project_spec(_with("project", name="a" * 63), SOURCE).project.name == "a" * 63


def test_serialization_rules() -> None:
    err = _error(_with("serialization", format="pkl"))
    assert "[serialization] format:" in err.message
    assert '"skops", "onnx" or "pickle"' in (err.hint or "")
    err = _error(_with("serialization", format="pickle"))
    assert "needs trust_pickle = true" in err.message
    err = _error(_with("serialization", trusted_types=["Clipper"]))
    assert "not a fully qualified type name" in err.message


def test_environments() -> None:
    err = _error({**_minimal(), "environments": {"prod": "fast"}})
    assert "[environments.prod]" in err.message
    err = _error({**_minimal(), "environments": {"Prod": {}}})
    assert "'Prod' is not a valid environment name" in err.message


def test_environment_settings_are_refused_not_ignored() -> None:
    # Nothing would apply them (an environment's SLA and gates are the platform's): say so, name the fix.
    err = _error({**_minimal(), "environments": {"dev": {"sla": {"p99_ms": 50}}}})
    assert "a project file cannot set an environment's settings ([environments.dev])" in err.message
    assert "harbourmaster environments configure dev --file dev.json" in err.hint
    assert "harbourmaster fallback PROJECT --env dev" in err.hint
    assert "[environments.prod]" in _error({**_minimal(), "environments": {"prod": {}}}).message


def test_multiple_problems_reported_together() -> None:
    data = {
        "project": {"name": "Bad Name"},
        "data": {"source": "a.csv"},
        "pipeline": {"train": "nope"},
        "extra": 1,
    }
    err = _error(data)
    for fragment in ("[project] name", "[data] target", "[pipeline] train", "extra: unknown key"):
        assert fragment in err.message
    assert err.message.count(SOURCE) == 1


def test_section_not_a_table() -> None:
    err = _error({**_minimal(), "data": "train.csv"})
    assert "[data]" in err.message
    assert "[data]" in (err.hint or "")


def test_not_a_dict() -> None:
    with pytest.raises(ProjectFileError, match="expected a TOML document"):
        parse_project_spec([], SOURCE)  # type: ignore[arg-type]


def test_parse_entrypoint() -> None:
    assert parse_entrypoint("pkg.mod:fn", "[pipeline] train") == ("pkg.mod", "fn")
    assert parse_entrypoint(" mod : fn ", "x") == ("mod", "fn")
    with pytest.raises(ProjectFileError) as info:
        parse_entrypoint("mod.fn", "[pipeline] train")
    assert info.value.message.startswith("[pipeline] train: ")
    assert "module:function" in (info.value.hint or "")
    with pytest.raises(ProjectFileError, match="expected a string"):
        parse_entrypoint(3, "k")  # type: ignore[arg-type]


def test_project_name_pattern_export() -> None:
    from harbourmaster.core.project_spec import PROJECT_NAME_PATTERN

    assert PROJECT_NAME_PATTERN.fullmatch("churn-2")
    assert not PROJECT_NAME_PATTERN.fullmatch("Churn")


def test_lifecycle_automation_is_opt_in_and_checked() -> None:
    from harbourmaster.core.cases import policy_of
    from harbourmaster.errors import ProjectFileError

    base = {"project": {"name": "p"}, "data": {"source": "d.csv", "target": "y"}, "pipeline": {"train": "m:train"}}
    plain = parse_project_spec(base, "harbourmaster.toml")
    assert plain.lifecycle.automation.enabled is False
    assert policy_of({"lifecycle": plain.lifecycle.model_dump()}) is None  # not opted in: no policy
    table = {"enabled": True, "window": "500rows", "loadtest_rate": 30.0, "cooldown_hours": 1.0}
    spec = parse_project_spec({**base, "lifecycle": {"automation": table}}, "harbourmaster.toml")
    policy = policy_of({"lifecycle": spec.lifecycle.model_dump()})
    assert policy is not None and policy.window == "500rows" and policy.loadtest_rate == 30.0
    assert policy.alerts == ("drift.dataset", "model_quality.drop") and policy.environment == "prod"
    for bad, words in (
        ({"enabled": True, "window": "soon"}, "window"),
        ({"enabled": True, "mix_training": 2.0}, "mix_training"),
        ({"enabled": True, "surprise": 1}, "surprise"),
    ):
        with pytest.raises(ProjectFileError) as refused:
            parse_project_spec({**base, "lifecycle": {"automation": bad}}, "harbourmaster.toml")
        assert words in str(refused.value), str(refused.value)
