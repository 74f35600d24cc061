"""The attempt runtime handed to the core through a ContextVar (airflow_resilience.context)."""

from __future__ import annotations

import contextvars

import pytest

from airflow_resilience import context
from airflow_resilience.checkpoint import Checkpoint
from airflow_resilience.errors import NoTaskContextError
from airflow_resilience.testing import CheckpointEnvironment
from airflow_resilience.watermark import MemoryWatermarks, Watermark, open_watermarks


def test_outside_any_attempt_the_core_says_what_to_use() -> None:
    with pytest.raises(NoTaskContextError, match="CheckpointEnvironment"):
        Checkpoint.current()
    with pytest.raises(NoTaskContextError, match="MemoryWatermarks"):
        Watermark("orders").__enter__()
    assert context.open_checkpoints() == []
    assert list(open_watermarks()) == []


def test_one_checkpoint_per_attempt_and_a_new_one_for_the_next() -> None:
    env = CheckpointEnvironment(retries=1)
    with env.attempt() as first:
        assert Checkpoint.current() is first
        assert Checkpoint.current() is first
        assert context.open_checkpoints() == [first]
    with env.attempt() as second:
        assert Checkpoint.current() is second is not first
    with pytest.raises(NoTaskContextError):
        Checkpoint.current()


def test_what_execute_opens_in_a_copied_context_is_seen_by_the_end_of_task() -> None:
    """Airflow runs execute in contextvars.copy_context(): the runtime is set before, so the registry
    (on the object) is shared, and the end-of-task listener outside the copy sees the open checkpoint."""
    env = CheckpointEnvironment()
    ckpt = env.new_checkpoint()
    opened = []
    rt = context.AttemptRuntime(open_checkpoint=lambda keep, interval: opened.append((keep, interval)) or ckpt)
    token = context.begin(rt)
    try:
        copied = contextvars.copy_context()
        assert copied.run(lambda: Checkpoint.current(flush_interval=5.0)) is ckpt
        assert opened == [(None, 5.0)]
        assert context.open_checkpoints() == [ckpt]  # outside the copy
    finally:
        context.end(token)
    assert context.current_or_none() is None


def test_watermarks_of_a_running_memory_attempt() -> None:
    store = MemoryWatermarks()
    attempt = store.attempt("ti-1")
    with attempt.running():
        with Watermark("orders", default=0) as wm:  # no backend: the running attempt's
            wm.advance(10)
        assert [w.name for w in open_watermarks()] == ["orders"]  # held until the task instance ends
        attempt.succeed()
    assert store.get("orders").value == 10
    assert list(open_watermarks()) == []


def test_end_actions_run_once() -> None:
    from airflow_resilience.watermark import end_of_task_actions, on_task_end

    rt = context.AttemptRuntime()
    with context.running(rt):
        seen = []
        on_task_end(seen.append)
        actions = end_of_task_actions()
        assert len(actions) == 1 and end_of_task_actions() == []
        actions[0](True)
        assert seen == [True]
    assert end_of_task_actions() == []


def test_a_runtime_without_a_checkpoint_factory_refuses() -> None:
    with context.running(context.AttemptRuntime(label="watermarks only")):
        with pytest.raises(NoTaskContextError):
            Checkpoint.current()
