"""The writer logs a request's inputs from its validated matrix exactly as it would from its records."""

from __future__ import annotations

import numpy as np
import orjson

from harbourmaster.core.log_layout import LogLayout
from harbourmaster.serving.capture import SPOOLED_FIELDS, Captured, _record_batch, spool_line

NAMES = ["a", "b", "c"]
LAYOUT = LogLayout(1, tuple((name, "float64") for name in NAMES), "int64", ("0", "1"))


def captured(i: int, rows: int, *, matrix: bool, names: list[str] = NAMES) -> Captured:
    records = [{name: float(i * 10 + r) + 0.25 * k for k, name in enumerate(NAMES)} for r in range(rows)]
    values = np.array([[record[name] for name in NAMES] for record in records]) if matrix else None
    proba = [{"0": 0.25, "1": 0.75}] * rows
    return Captured(
        1_700_000_000_000_000 + i, f"r{i}", "p", 1, "champion", None, 200, 1.0, records, [1] * rows, proba,
        None, None, values, names if matrix else None,
    )  # fmt: skip


def test_matrix_and_records_give_the_same_rows() -> None:
    for sizes in ([1] * 7, [1, 3, 2]):
        from_records = _record_batch([captured(i, n, matrix=False) for i, n in enumerate(sizes)], "dev", "r", LAYOUT)
        from_matrix = _record_batch([captured(i, n, matrix=True) for i, n in enumerate(sizes)], "dev", "r", LAYOUT)
        assert from_matrix.schema.equals(from_records.schema)
        assert from_matrix.equals(from_records)
        assert from_matrix.column("in_b").to_pylist()[:2] == [0.25, 10.25]


def test_a_matrix_in_another_column_order_is_not_used() -> None:
    swapped = ["b", "a", "c"]  # what the matrix says its columns are: not the layout's order
    entries = [captured(i, 1, matrix=True, names=swapped) for i in range(3)]
    batch = _record_batch(entries, "dev", "r", LAYOUT)
    assert batch.column("in_a").to_pylist() == [0.0, 10.0, 20.0]  # from the records, not the matrix


def test_the_matrix_never_reaches_the_spool_line() -> None:
    entry = captured(0, 2, matrix=True)
    line = orjson.loads(orjson.dumps(entry[:SPOOLED_FIELDS], option=orjson.OPT_SERIALIZE_NUMPY))
    assert len(line) == SPOOLED_FIELDS and Captured(*line).records == entry.records and Captured(*line).matrix is None


def test_a_spool_line_with_the_clients_bytes_replays_as_the_encoded_one() -> None:
    body = b'{"a": 1.5,"b":-2e3, "c":0.1}'  # the client's spacing and number spelling
    record = orjson.loads(body)
    entry = Captured(1, "r", "p", 1, "champion", None, 200, 1.0, [record], [1], [{"0": 0.5, "1": 0.5}])
    encoded = spool_line(entry)
    sent = spool_line(entry._replace(records_json=b"[" + body + b"]"))
    assert sent != encoded and sent.endswith(b"\n") and sent.count(b"\n") == 1
    assert orjson.loads(sent) == orjson.loads(encoded)
    assert Captured(*orjson.loads(sent)) == entry
