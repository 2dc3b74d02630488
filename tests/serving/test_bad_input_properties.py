"""No 5xx for bad input, proven by generation: hypothesis mutates valid requests (types, shapes, names,
nesting, sizes, encodings, invalid UTF-8, huge numbers, NaN/Infinity literals) sent to a real replica on
loopback; every answer is a 4xx with a JSON error body (or a 200 when the mutation happened to stay valid).

Bounded: ``HM_PROPERTY_EXAMPLES`` examples per endpoint (60 by default), derandomized so CI is repeatable;
raise it and set ``HM_PROPERTY_SEARCH=1`` locally to search harder with fresh examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import make_settings
from tests.serving.projects import COLOURS, MOODY, train_colours, train_moody

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread

ACTOR = Actor.local_owner()
EXAMPLES = int(os.environ.get("HM_PROPERTY_EXAMPLES", "60"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("HM_PROPERTY_SEARCH"),  # set it to search with fresh random examples
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
LITERALS = [b"NaN", b"-Infinity", b"Infinity", b"1e999", b"-1e999", b"1" + b"0" * 400, b"0x10", b"01", b"1.", b"tru"]
BAD_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\xbc", b"\x00", b'"\\ud800"', b'"\\u00"']


def mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """One structural mutation somewhere in a JSON tree (replace, delete, insert, rename, wrap, repeat)."""
    kinds = ["replace", "wrap"]
    if isinstance(value, dict) and value:
        kinds += ["descend", "descend", "delete", "insert", "rename"]
    elif isinstance(value, list) and value:
        kinds += ["descend", "descend", "delete", "repeat"]
    kind = data.draw(st.sampled_from(kinds) if depth < 6 else st.just("replace"))
    if kind == "replace":
        return data.draw(VALUES)
    if kind == "wrap":
        return data.draw(st.sampled_from([[value], {"records": value}, {"inputs": value}, {"x": value}]))
    if isinstance(value, dict):
        key = data.draw(st.sampled_from(sorted(value)))
        copy = dict(value)
        if kind == "descend":
            copy[key] = mutate(data, copy[key], depth + 1)
        elif kind == "delete":
            del copy[key]
        elif kind == "insert":
            copy[data.draw(st.text(max_size=10))] = data.draw(VALUES)
        else:
            copy[data.draw(st.text(max_size=10))] = copy.pop(key)
        return copy
    index = data.draw(st.integers(0, len(value) - 1))
    copy = list(value)
    if kind == "descend":
        copy[index] = mutate(data, copy[index], depth + 1)
    elif kind == "delete":
        del copy[index]
    else:
        copy = copy * data.draw(st.sampled_from([0, 2, 50, 3000]))
    return copy


def mutated(data: st.DataObject, tree: Any) -> Any:
    """One to three mutations in a row."""
    for _ in range(data.draw(st.integers(1, 3))):
        tree = mutate(data, tree)
    return tree


def encode(data: st.DataObject, tree: Any) -> bytes:
    """The tree as JSON, then perhaps broken at the byte level (literals, invalid UTF-8, truncation, noise)."""
    # The standard library's encoder: it writes integers beyond 64 bits and lone surrogates (invalid UTF-8).
    raw = json.dumps(tree, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    kind = data.draw(st.sampled_from(["as-is", "as-is", "literal", "utf8", "truncate", "noise"]))
    if kind == "as-is":
        return raw
    if kind == "noise":
        return data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, len(raw)))
    if kind == "truncate":
        return raw[:at]
    insert = data.draw(st.sampled_from(LITERALS if kind == "literal" else BAD_BYTES))
    return raw[:at] + insert + raw[at:]


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    body = answer.json()  # every answer is JSON
    if answer.status_code != 200:
        assert 400 <= answer.status_code < 500
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("properties")
    platform = Platform(make_settings(folder / "home"))
    moody = train_moody(platform, folder)
    platform.deployments.deploy(ACTOR, MOODY, moody["good"], "dev")
    platform.deployments.deploy(ACTOR, COLOURS, train_colours(platform, folder), "dev")
    server = ServerThread(platform, "dev", ReplicaOptions(poll_seconds=0.2)).start()
    client = httpx.Client(base_url=server.url, timeout=60)
    for project in (MOODY, COLOURS):
        assert client.get(f"/v2/models/{project}/ready").status_code in (200, 503)
    yield client
    client.close()
    server.stop()
    platform.close()


def send(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(url, content=body, headers={"content-type": "application/json"})


V1 = {MOODY: {"x1": 1.0, "x2": 2.0}, COLOURS: {"colour": "red", "size": 3.0}}


@PROPERTY
@given(data=st.data())
def test_predict_never_answers_5xx_to_a_mutated_request(replica: httpx.Client, data: st.DataObject) -> None:
    project = data.draw(st.sampled_from([MOODY, COLOURS]))
    base = data.draw(st.sampled_from([V1[project], {"records": [V1[project], V1[project]]}]))
    check(send(replica, f"/v1/projects/{project}/predict", encode(data, mutated(data, base))))


def v2_body(project: str) -> dict[str, Any]:
    record = V1[project]
    return {
        "inputs": [
            {"name": name, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
            for name, v in record.items()
        ]
    }


@PROPERTY
@given(data=st.data())
def test_infer_never_answers_5xx_to_a_mutated_request(replica: httpx.Client, data: st.DataObject) -> None:
    project = data.draw(st.sampled_from([MOODY, COLOURS]))
    matrix = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    base = data.draw(st.sampled_from([v2_body(project), matrix]))
    check(send(replica, f"/v2/models/{project}/infer", encode(data, mutated(data, base))))


@PROPERTY
@given(data=st.data())
def test_feedback_never_answers_5xx_and_refuses_made_up_requests(replica: httpx.Client, data: st.DataObject) -> None:
    base = data.draw(
        st.sampled_from(
            [
                {"feedback": [{"request_id": "never-answered", "value": 1, "row": 0}]},
                {"request_ids": ["never-answered"], "values": [1]},
            ]
        )
    )
    answer = send(replica, f"/v1/projects/{MOODY}/feedback", encode(data, mutated(data, base)))
    check(answer)
    assert answer.status_code != 200  # no mutation of a made-up request id names an answered request


def test_feedback_for_an_unknown_request_row_or_label_is_refused_naming_it(replica: httpx.Client) -> None:
    answered = replica.post(f"/v1/projects/{MOODY}/predict", json={"records": [V1[MOODY], V1[MOODY]]}).json()
    rid = answered["request_id"]
    url = f"/v1/projects/{MOODY}/feedback"

    unknown = replica.post(url, json={"feedback": [{"request_id": "nobody-asked", "value": 1}]})
    assert unknown.status_code == 422 and "nobody-asked" in unknown.json()["error"]
    row = replica.post(url, json={"feedback": [{"request_id": rid, "row": 2, "value": 1}]})
    assert row.status_code == 422 and f"{rid} row 2 (of 2)" in row.json()["error"]
    label = replica.post(url, json={"feedback": [{"request_id": rid, "row": 1, "value": 7}]})
    assert label.status_code == 422 and "not classes" in label.json()["error"] and "0, 1" in label.json()["hint"]
    stored = replica.post(url, json={"feedback": [{"request_id": rid, "row": 1, "value": 1}]})
    assert stored.status_code == 200 and stored.json() == {"stored": 1}


def test_zero_rows_is_the_clients_error(replica: httpx.Client, tmp_path: Path) -> None:
    empty_columns = {"inputs": [{"name": "x1", "data": []}, {"name": "x2", "data": []}]}
    for url, body in (
        (f"/v1/projects/{MOODY}/predict", {"records": []}),
        (f"/v2/models/{MOODY}/infer", empty_columns),
        (f"/v2/models/{MOODY}/infer", {"inputs": [{"name": "input", "shape": [0, 2], "data": []}]}),
    ):
        answer = replica.post(url, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert "error" in answer.json()
