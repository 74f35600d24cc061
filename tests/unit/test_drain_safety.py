"""Where a SIGTERM drain may raise: never inside a supervisor request, a log write or a state-store call."""

from __future__ import annotations

import sys

import pytest

execution = pytest.importorskip("airflow_resilience.airflow.execution")


def frame_in(module: str):
    namespace: dict = {"__name__": module, "sys": sys}
    exec("def here():\n    return sys._getframe()\n", namespace)
    return namespace["here"]()


@pytest.mark.parametrize(
    ("module", "unsafe"),
    [
        ("airflow.sdk.execution_time.comms", True),
        ("airflow.sdk.execution_time.supervisor", True),
        ("logging", True),
        ("structlog._log_levels", True),
        ("airflow_resilience.airflow.store", True),
        ("my_dag_file", False),
        ("airflow.sdk.execution_time.task_runner", False),
    ],
)
def test_unsafe_frames(module: str, unsafe: bool) -> None:
    assert execution._unsafe_to_interrupt(frame_in(module)) is unsafe


def test_inside_a_store_call_is_unsafe() -> None:
    execution.store_call_started()
    try:
        assert execution._unsafe_to_interrupt(frame_in("my_dag_file"))
    finally:
        execution.store_call_finished()
    assert not execution._unsafe_to_interrupt(frame_in("my_dag_file"))
