"""Table tests of the resume decision: fresh, resume, stale, clear means rerun."""

from __future__ import annotations

import pytest

from airflow_resilience.attempt import AttemptId, Head, Plan, plan, was_cleared
from airflow_resilience.errors import CorruptCheckpointError


def head(try_number: int, max_tries: int = 2, clear_number: int = 0, generation: int = 0) -> Head:
    return Head(try_number=try_number, max_tries=max_tries, clear_number=clear_number, generation=generation)


def attempt(try_number: int, max_tries: int = 2, clear_number: int = 0) -> AttemptId:
    return AttemptId(try_number=try_number, max_tries=max_tries, clear_number=clear_number)


@pytest.mark.parametrize(
    ("saved", "current", "keep", "expected"),
    [
        pytest.param(None, attempt(1), False, Plan.FRESH, id="first-attempt"),
        pytest.param(head(1), attempt(2), False, Plan.RESUME, id="retry-resumes"),
        pytest.param(head(1), attempt(3), False, Plan.RESUME, id="retry-after-silent-attempt"),
        pytest.param(head(2), attempt(2), False, Plan.RESUME, id="same-try-reentered"),
        pytest.param(head(3), attempt(2), False, Plan.STALE, id="zombie-after-newer-attempt"),
        pytest.param(head(1, 2, 0), attempt(2, 3, 1), False, Plan.RERUN_AFTER_CLEAR, id="clear-after-success"),
        pytest.param(head(1, 2, 0), attempt(2, 3, 1), True, Plan.KEEP_AFTER_CLEAR, id="clear-with-opt-out"),
        pytest.param(head(3, 2, 0), attempt(4, 5, 1), False, Plan.RERUN_AFTER_CLEAR, id="clear-after-failure"),
        pytest.param(head(1, 2, 0), attempt(2, 2, 1), False, Plan.RESUME, id="other-task-cleared-same-run"),
        pytest.param(head(1, 2, 0), attempt(2, 4, 0), False, Plan.RESUME, id="max-tries-moved-without-clear"),
        pytest.param(head(4, 5, 1, 1), attempt(5, 6, 2), False, Plan.RERUN_AFTER_CLEAR, id="second-clear"),
    ],
)
def test_plan(saved: Head | None, current: AttemptId, keep: bool, expected: Plan) -> None:
    assert plan(saved, current, keep_on_clear=keep) is expected


def test_was_cleared_needs_both_marks() -> None:
    assert was_cleared(head(1, 2, 0), attempt(2, 3, 1))
    assert not was_cleared(head(1, 2, 0), attempt(2, 2, 1))
    assert not was_cleared(head(1, 2, 0), attempt(2, 3, 0))


def test_head_round_trip() -> None:
    h = head(3, 4, 1, 2)
    assert Head.from_json(h.to_json()) == h
    assert h.to_json()["doc"] == "resilience:checkpoint:try-3"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("text", r"holds str, expected an object"),
        ({"format": 99}, r"has format 99"),
        ({"format": 1, "try_number": 1}, r"damaged"),
        ({"format": 1, "try_number": "1", "max_tries": 0, "clear_number": 0, "generation": 0}, r"not an integer"),
        ({"format": 1, "try_number": True, "max_tries": 0, "clear_number": 0, "generation": 0}, r"not an integer"),
    ],
)
def test_corrupt_head_names_key_and_fix(raw: object, message: str) -> None:
    with pytest.raises(CorruptCheckpointError, match=message) as err:
        Head.from_json(raw)
    assert "resilience:checkpoint:head" in str(err.value)
    assert "airflow resilience checkpoint" in str(err.value)
