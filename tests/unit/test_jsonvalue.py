from __future__ import annotations

import datetime
import decimal

import pytest

from airflow_resilience.errors import CheckpointValueError
from airflow_resilience.jsonvalue import check_json, encoded_size


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -1.5, "s", [], {}, [1, "a", None], {"a": {"b": [1, 2, {"c": False}]}}, (1, 2)],
)
def test_json_values_pass(value: object) -> None:
    check_json("k", value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime.datetime(2024, 1, 1), r"datetime at \$ is not JSON-serializable \(store value.isoformat"),
        ({"a": [1, decimal.Decimal("1")]}, r"Decimal at \$.a\[1\]"),
        ({1: "x"}, r"object key 1 \(int\) at \$ is not a string"),
        ({"a": float("nan")}, r"nan at \$.a is not valid JSON"),
        (float("inf"), r"inf at \$"),
        ({1, 2}, r"set at \$"),
        (b"bytes", r"bytes at \$"),
    ],
)
def test_non_json_names_key_and_path(value: object, message: str) -> None:
    with pytest.raises(CheckpointValueError, match=message) as err:
        check_json("orders", value)
    assert "checkpoint key 'orders'" in str(err.value)


def test_encoded_size_matches_airflow_measure() -> None:
    assert encoded_size({"a": "xx"}) == len('{"a": "xx"}')
