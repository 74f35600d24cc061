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
    from airflow_resilience import critical

    critical.enter()  # what the task's state-store client does around each supervisor request
    try:
        assert execution._unsafe_to_interrupt(frame_in("my_dag_file"))
    finally:
        critical.leave()
    assert not execution._unsafe_to_interrupt(frame_in("my_dag_file"))


def test_frames_outside_execute_do_not_count() -> None:
    """The runner is forked from supervisor code: frames below the execute wrapper are not inspected."""
    namespace: dict = {"__name__": "airflow.sdk.execution_time.supervisor", "sys": sys, "execution": execution}
    exec(
        "def supervisor_side(inner):\n"
        "    execution._state.execute_frame = sys._getframe()\n"
        "    try:\n"
        "        return inner()\n"
        "    finally:\n"
        "        execution._state.execute_frame = None\n",
        namespace,
    )
    user: dict = {"__name__": "my_dag_file", "sys": sys}
    exec("def here():\n    return sys._getframe()\n", user)
    frame = namespace["supervisor_side"](user["here"])
    # while the wrapper frame was set, the walk stopped there; check again with it set to that frame
    execution._state.execute_frame = frame.f_back
    try:
        assert not execution._unsafe_to_interrupt(frame)
    finally:
        execution._state.execute_frame = None
    assert execution._unsafe_to_interrupt(frame)  # without the stop, the supervisor frame below counts


@pytest.mark.parametrize(
    ("module", "unsafe"),
    [
        ("airflow_resilience.checkpoint", True),  # between step()'s function returning and its write
        ("airflow_resilience.resumable", True),  # between submit() returning and the id being saved
        ("airflow_resilience.airflow.operators", False),  # its polling loop must drain
        ("httpx._client", False),  # a user's own long HTTP call must not block a drain
    ],
)
def test_own_code_is_deferred_only_where_it_is_the_innermost_frame(module: str, unsafe: bool) -> None:
    assert execution._unsafe_to_interrupt(frame_in(module)) is unsafe


def test_inside_a_critical_section_a_drain_is_deferred_and_redelivered(monkeypatch) -> None:
    from airflow_resilience import critical

    sent: list[int] = []
    monkeypatch.setattr(critical.os, "kill", lambda pid, sig: sent.append(sig))
    with critical.critical():
        assert execution._unsafe_to_interrupt(frame_in("my_dag_file"))
        critical.defer()  # what the handler does when the signal lands here
        assert sent == []
    import signal

    assert sent == [signal.SIGTERM]  # delivered again once the section ended
    assert not critical.pending()
