"""Pure pieces of serving: options, rules, humility, routing, validation, ONNX exactness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.core.fallback import (
    FallbackConfig,
    HumilityCheck,
    HumilityOptions,
    evaluate_rules,
    validate_deployment_options,
    validate_fallback_config,
)
from harbourmaster.core.profile import build_profile
from harbourmaster.core.routing import bucket, choose_side
from harbourmaster.core.validation import Validator
from harbourmaster.errors import InvalidInputError


def test_options_and_fallback_config_are_validated() -> None:
    options = validate_deployment_options({"latency_budget_ms": 20, "microbatch": {"enabled": True}})
    assert options["unknown_fields"] == "reject" and options["microbatch"]["max_batch"] == 32
    with pytest.raises(InvalidInputError, match="unknown_fields"):
        validate_deployment_options({"unknown_fields": "maybe"})
    with pytest.raises(InvalidInputError):
        validate_deployment_options({"colour": 1})
    with pytest.raises(InvalidInputError, match="function"):
        validate_fallback_config({"function": "not a function"})
    assert validate_fallback_config({})["rules"] == []


def test_rule_table_first_match_then_default() -> None:
    config = FallbackConfig.model_validate(
        {
            "rules": [
                {
                    "when": [{"feature": "x", "op": ">", "value": 10}, {"feature": "c", "op": "in", "value": ["a"]}],
                    "output": "high",
                },
                {"when": {"feature": "x", "op": "is_null"}, "output": "unknown"},
            ],
            "default": "low",
        }
    )
    assert evaluate_rules(config, {"x": 11, "c": "a"}) == (True, "high")
    assert evaluate_rules(config, {"x": 11, "c": "b"}) == (True, "low")
    assert evaluate_rules(config, {"x": None, "c": "a"}) == (True, "unknown")
    assert evaluate_rules(config, {"x": "text", "c": "a"}) == (True, "low")  # a failed comparison is false
    assert evaluate_rules(FallbackConfig(), {"x": 1}) == (False, None)


def test_humility_bounds_with_margin_and_feature_choice() -> None:
    profile = build_profile(pd.DataFrame({"a": [0.0, 10.0], "b": [0.0, 1.0]}))
    check = HumilityCheck(profile, HumilityOptions(enabled=True, margin=0.1))
    assert check.violations({"a": 10.5, "b": 0.5}) == []
    assert check.violations({"a": 11.5, "b": -1}) == ["a", "b"]
    only_b = HumilityCheck(profile, HumilityOptions(enabled=True, features=["b"]))
    assert only_b.violations({"a": 99.0, "b": 0.5}) == []


def test_canary_routing_weights_and_stickiness() -> None:
    assert choose_side(0, draw=0) == "champion" and choose_side(100, draw=99) == "challenger"
    assert choose_side(30, draw=10) == "challenger" and choose_side(30, draw=40) == "champion"
    assert {choose_side(50, "user-7") for _ in range(20)} == {choose_side(50, "user-7")}
    share = sum(bucket(f"user-{i}") < 20 for i in range(5000)) / 5000
    assert 0.17 < share < 0.23


def test_validator_names_every_problem() -> None:
    schema = {
        "columns": [
            {"name": "n", "dtype": "float", "nullable": False},
            {"name": "i", "dtype": "integer", "nullable": True},
            {"name": "c", "dtype": "string", "nullable": False, "categories": ["a", "b"]},
            {"name": "f", "dtype": "boolean", "nullable": False},
        ]
    }
    validator = Validator(schema)
    assert validator.check([{"n": 1.5, "i": None, "c": "a", "f": True}]) == []
    errors = validator.check([{"n": True, "i": 1.5, "c": "z", "f": "yes", "extra": 1}, {"n": None}, "row"])
    found = {(e["record"], e["field"], e["error"].split(" (")[0]) for e in errors}
    assert (0, "n", "expected a number, got boolean") in found
    assert (0, "i", "expected an integer, got 1.5") in found
    assert (0, "c", "unseen category 'z'") in found
    assert (0, "f", "expected a boolean, got string") in found
    assert (0, "extra", "unknown field") in found
    assert (1, "n", "null is not allowed") in found and (1, "c", "missing") in found
    assert (2, None, "expected an object, got string") in found
    lenient = Validator(schema, "ignore")
    assert lenient.check([{"n": 1.0, "i": 1, "c": "b", "f": False, "extra": 1}]) == []
    assert lenient.clean([{"n": 1.0, "i": 1, "c": "b", "f": False, "extra": 1}]) == [
        {"n": 1.0, "i": 1, "c": "b", "f": False}
    ]


def test_validator_whole_request_matrix_or_the_per_field_check() -> None:
    schema = {"columns": [{"name": "x", "dtype": "float"}, {"name": "k", "dtype": "integer", "nullable": True}]}
    validator = Validator(schema)
    records = [{"x": 1.5, "k": 2}, {"k": 3, "x": -0.25}]
    matrix = validator.plain_matrix(records)
    assert matrix is not None and matrix.tolist() == [[1.5, 2.0], [-0.25, 3.0]]
    assert validator.check(records) == []
    # not conclusive: None, and the per-field check decides (valid after all, or names the problem)
    for bad, error in (
        ({"x": 1.5, "k": None}, None),
        ({"x": 1, "k": 2}, None),
        ({"x": True, "k": 2}, "expected a number, got boolean"),
        ({"x": "1.5", "k": 2}, "expected a number, got string"),
        ({"x": float("nan"), "k": 2}, "must be a finite number"),
        ({"x": 1.5, "k": 2.0}, None),
        ({"x": 1.5}, "missing"),
        ({"x": 1.5, "k": 2, "z": 1}, "unknown field"),
        ([1.5, 2], "expected an object, got array"),
        (7, "expected an object, got number"),
    ):
        assert validator.plain_matrix([records[0], bad]) is None, bad
        errors = validator.check([records[0], bad])
        assert [e["error"] for e in errors] == ([] if error is None else [error]), bad
    floats = Validator({"columns": [{"name": "a", "dtype": "float"}, {"name": "b", "dtype": "float"}]})
    assert floats.plain_matrix([{"a": 1.0, "b": float("inf")}]) is None
    assert floats.plain_matrix([{"a": 1.0, "b": 2}]) is None and floats.check([{"a": 1.0, "b": 2}]) == []
    # finiteness: a sum that overflows is not a non-finite value; small and large requests decide alike
    for rows in (1, 300):
        huge = floats.plain_matrix([{"a": 1e308, "b": 1e308}] * rows)
        assert huge is not None and huge.shape == (rows, 2)
        for bad in (float("inf"), float("-inf"), float("nan")):
            assert floats.plain_matrix([{"a": 1.0, "b": 2.0}] * (rows - 1) + [{"a": -1e308, "b": bad}]) is None
    ints = Validator({"columns": [{"name": "k", "dtype": "integer"}]})
    assert ints.plain_matrix([{"k": 10**300}, {"k": 10**300}]).tolist() == [[1e300], [1e300]]  # type: ignore[union-attr]


def test_http_protocol_sets_tcp_nodelay_on_sockets_accepted_from_a_proto_0_listener() -> None:
    """uvicorn's multi-worker mode listens on a socket made with proto=0; asyncio then leaves Nagle on."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from harbourmaster.serving.server import HTTP_PROTOCOL, uvicorn_config

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            await receive()  # type: ignore[operator]
            await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            await receive()  # type: ignore[operator]
            await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    def nodelay_seen_by(protocol: type) -> list[int]:
        seen: list[int] = []

        class Recording(protocol):  # type: ignore[misc, valid-type]
            def connection_made(self, transport: object) -> None:
                super().connection_made(transport)
                sock = transport.get_extra_info("socket")  # type: ignore[attr-defined]
                seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto=0, as uvicorn's bind_socket()
        assert listener.proto == 0
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, http=Recording, loop="asyncio"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
                time.sleep(0.01)
            assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"
        finally:
            server.should_exit = True
            thread.join(30)
            listener.close()
        return seen

    assert nodelay_seen_by(HTTP_PROTOCOL.__mro__[1]) == [0]  # uvicorn's own protocol: Nagle stays on
    assert len(seen := nodelay_seen_by(HTTP_PROTOCOL)) == 1 and seen[0] != 0


def test_onnx_fast_path_is_exact_and_custom_code_stays_on_the_pipeline(sqlite_settings: object) -> None:
    pytest.importorskip("skl2onnx")
    from harbourmaster.bundle.predictor import Predictor
    from harbourmaster.client import Client

    data = load_breast_cancer(as_frame=True)
    frame = data.frame
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    pipeline.fit(data.data, data.target)
    with Client(settings=sqlite_settings) as hm:
        hm.register("plain", pipeline, frame, target="target", metrics={"accuracy": 1.0})
        bundle = hm.load("plain", "latest")
    predictor = Predictor(1, bundle)
    assert predictor.engine == "onnx"
    records = data.data.head(50).to_dict(orient="records")
    labels, proba = predictor.predict(predictor.batch(records))
    assert np.array_equal(labels, pipeline.predict(data.data.head(50)))
    assert np.abs(proba - pipeline.predict_proba(data.data.head(50))).max() < 1e-9
    assert Predictor(1, bundle, use_onnx=False).engine == "sklearn"
