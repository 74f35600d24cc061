"""The Checkpoint core over the in-memory store: resume, kills, fencing, clear, bad input, batching."""

from __future__ import annotations

import pytest

from airflow_resilience import Checkpoint
from airflow_resilience.attempt import HEAD_KEY, AttemptId, Plan, doc_key
from airflow_resilience.errors import (
    CheckpointTooLargeError,
    CheckpointValueError,
    ConfigurationError,
    CorruptCheckpointError,
    StaleAttemptError,
)
from airflow_resilience.store import MemoryTaskStore
from airflow_resilience.testing import CheckpointEnvironment

_killed: list[object] = []  # generators of "SIGKILLed" attempts: kept alive so no finally ever runs


def hard_kill(iterator: object, ckpt: Checkpoint) -> None:
    """Abandon an attempt as SIGKILL does: nothing pending is written, no finally block runs later."""
    ckpt._dirty = False  # the process is gone: what was pending is lost, and nothing writes it at exit
    _killed.append(iterator)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_iterate_resumes_after_last_finished_item_across_two_kills() -> None:
    env = CheckpointEnvironment(retries=3)
    processed: list[tuple[int, int]] = []
    for try_number, kill_at in ((1, 20), (2, 40), (3, None)):
        ckpt = env.new_checkpoint()
        it = ckpt.iterate(range(60), key="steps")
        for item in it:
            processed.append((try_number, item))
            if item == kill_at:  # killed while item kill_at is in progress
                hard_kill(it, ckpt)
                break
    items = [i for _t, i in processed]
    assert sorted(set(items)) == list(range(60))
    redone = len(items) - 60
    assert redone == 2  # the item in progress at each of the two kills
    assert [i for t, i in processed if t == 2][0] == 20
    assert [i for t, i in processed if t == 3][0] == 40


def test_step_runs_once_across_attempts() -> None:
    env = CheckpointEnvironment(retries=2)
    calls: list[int] = []
    for _ in range(3):
        ckpt = env.new_checkpoint()
        assert ckpt.step("provision", lambda: calls.append(1) or {"cluster": "c-1"}) == {"cluster": "c-1"}
    assert calls == [1]


def test_get_set_survive_retry() -> None:
    env = CheckpointEnvironment(retries=1)
    ckpt = env.new_checkpoint()
    assert ckpt.get("cursor", "start") == "start"
    ckpt.set("cursor", {"page": 7})
    ckpt2 = env.new_checkpoint()
    assert ckpt2.get("cursor") == {"page": 7}
    assert ckpt2.resumption.plan is Plan.RESUME
    assert ckpt2.resumption.from_try == 1
    assert [a["try_number"] for a in ckpt2.attempts] == [1, 2]
    assert ckpt2.context.attempts == ()  # no failure recorded in the ledger


def test_loop_body_error_keeps_progress_and_redoes_failed_item() -> None:
    env = CheckpointEnvironment(retries=1)
    ckpt = env.new_checkpoint(flush_interval=3600)  # batched: the error path must still write
    seen = []
    with pytest.raises(RuntimeError):
        for i in ckpt.iterate(range(10), key="k"):
            seen.append(i)
            if i == 6:
                raise RuntimeError("boom")
    ckpt2 = env.new_checkpoint()
    assert list(ckpt2.iterate(range(10), key="k")) == [6, 7, 8, 9]


def test_completed_loop_yields_nothing_on_resume() -> None:
    env = CheckpointEnvironment(retries=1)
    assert list(env.new_checkpoint().iterate("abc", key="k")) == ["a", "b", "c"]
    assert list(env.new_checkpoint().iterate("abc", key="k")) == []


def test_batched_writes_follow_the_interval() -> None:
    clock = FakeClock()
    store = MemoryTaskStore()
    ckpt = Checkpoint(store.start_attempt(1), AttemptId(1), flush_interval=1.0, clock=clock)
    it = ckpt.iterate(range(100), key="k")
    for i in it:
        clock.now += 0.1  # 10 items per second
        if i == 54:
            hard_kill(it, ckpt)
            break
    # 5.4 s of work at one write per second: 5 writes of the document (+1 head write)
    assert ckpt.writes == 6
    resumed = Checkpoint(store.start_attempt(2), AttemptId(2))
    lost = 54 - resumed.done_items("k")
    assert 0 <= lost <= 10  # at most one interval of finished items


def test_request_flush_writes_at_next_boundary() -> None:
    clock = FakeClock()
    store = MemoryTaskStore()
    ckpt = Checkpoint(store.start_attempt(1), AttemptId(1), flush_interval=3600, clock=clock)
    it = ckpt.iterate(range(10), key="k")
    next(it)
    next(it)
    ckpt.request_flush()  # what the SIGTERM hook does
    next(it)  # item 1 finished -> written now
    hard_kill(it, ckpt)
    assert Checkpoint(store.start_attempt(2), AttemptId(2)).done_items("k") == 2


def test_stale_attempt_write_is_refused_and_newer_data_kept() -> None:
    store = MemoryTaskStore()
    old = Checkpoint(store.start_attempt(1), AttemptId(1))
    old.set("pos", 1)
    new = Checkpoint(store.start_attempt(2), AttemptId(2))
    new.set("pos", 2)
    with pytest.raises(StaleAttemptError, match="superseded by attempt 2"):
        old.set("pos", 999)
    assert store.snapshot()[doc_key(2)]["values"] == {"pos": 2}
    assert Checkpoint(store.start_attempt(3), AttemptId(3)).get("pos") == 2


def test_attempt_that_starts_after_a_newer_one_wrote_is_stale() -> None:
    store = MemoryTaskStore()
    Checkpoint(store.start_attempt(2), AttemptId(2)).set("pos", 2)
    with pytest.raises(StaleAttemptError, match="attempt 1 is stale: attempt 2"):
        Checkpoint(store.view(1), AttemptId(1))


def test_clear_means_rerun() -> None:
    env = CheckpointEnvironment(retries=2)
    ckpt = env.new_checkpoint()
    assert list(ckpt.iterate(range(3), key="k")) == [0, 1, 2]
    ckpt.set("v", 1)
    env.clear()
    fresh = env.new_checkpoint()
    assert fresh.resumption.plan is Plan.RERUN_AFTER_CLEAR
    assert fresh.generation == 1
    assert fresh.get("v") is None
    assert list(fresh.iterate(range(3), key="k")) == [0, 1, 2]
    saved = env.saved()
    assert saved[HEAD_KEY]["generation"] == 1
    assert doc_key(1) not in saved  # the superseded document was dropped after the new one was written


def test_clear_with_opt_out_keeps_checkpoint() -> None:
    env = CheckpointEnvironment(retries=2)
    ckpt = env.new_checkpoint()
    list(ckpt.iterate(range(3), key="k"))
    env.clear()
    kept = env.new_checkpoint(keep_on_clear=True)
    assert kept.resumption.plan is Plan.KEEP_AFTER_CLEAR
    assert list(kept.iterate(range(3), key="k")) == []


def test_non_json_value_rejected_and_nothing_lost() -> None:
    env = CheckpointEnvironment()
    ckpt = env.new_checkpoint()
    ckpt.set("a", 1)
    with pytest.raises(CheckpointValueError, match="checkpoint key 'when'"):
        ckpt.set("when", object())
    with pytest.raises(CheckpointValueError, match="checkpoint key 'step:s'"):
        ckpt.step("s", lambda: {1, 2})
    assert env.saved()[doc_key(1)]["values"] == {"a": 1}


def test_oversized_value_rejected_and_earlier_checkpoint_intact() -> None:
    env = CheckpointEnvironment(max_value_bytes=2000)
    ckpt = env.new_checkpoint()
    ckpt.set("small", "x" * 10)
    with pytest.raises(CheckpointTooLargeError, match=r"checkpoint key 'blob'.*over the state store limit of 2000"):
        ckpt.set("blob", "x" * 5000)
    assert ckpt.get("blob") is None
    with pytest.raises(CheckpointTooLargeError, match="step:big"):
        ckpt.step("big", lambda: "y" * 5000)
    ckpt.set("small", "ok")
    assert env.saved()[doc_key(1)]["values"] == {"small": "ok"}


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        (HEAD_KEY, "garbage", "holds str"),
        (doc_key(1), None, "which is missing"),
        (doc_key(1), ["not", "a", "doc"], "is not a format-1 checkpoint document"),
        (doc_key(1), {"format": 1, "values": []}, "field 'values' is list"),
        (doc_key(1), {"format": 1, "loops": {"parts": {"done": -3}}}, r"position of iterate\(key='parts'\)"),
    ],
)
def test_corrupt_state_fails_loudly_and_is_left_untouched(key: str, raw: object, message: str) -> None:
    env = CheckpointEnvironment(retries=1)
    env.new_checkpoint().set("v", 1)
    if raw is None:
        env.store.data.pop(key)
    else:
        import json

        env.store.data[key] = json.dumps(raw)
    before = dict(env.store.data)
    with pytest.raises(CorruptCheckpointError, match=message):
        env.new_checkpoint()
    assert env.store.data == before


@pytest.mark.parametrize("bad", [-1, "1", float("nan"), True])
def test_bad_flush_interval(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="flush_interval must be a number of seconds"):
        Checkpoint(MemoryTaskStore().start_attempt(1), AttemptId(1), flush_interval=bad)  # type: ignore[arg-type]


def test_current_inside_checkpoint_environment() -> None:
    env = CheckpointEnvironment(retries=1)

    def task_body() -> int:
        ckpt = Checkpoint.current()
        return sum(ckpt.iterate(range(5), key="n"))

    with env.attempt():
        assert task_body() == 10
    with env.attempt() as ckpt:
        assert task_body() == 0
        assert ckpt.resumption.loops == {"n": 5}


def test_current_outside_a_task_says_what_to_do() -> None:
    from airflow_resilience.errors import NoTaskContextError

    with pytest.raises(NoTaskContextError, match="CheckpointEnvironment"):
        Checkpoint.current()


def test_context_is_the_ledger() -> None:
    from airflow_resilience.causes import FailureCause, FailureKind, Reason
    from airflow_resilience.ledger import LEDGER_KEY, AttemptRecord, Ledger

    env = CheckpointEnvironment(retries=1)
    env.new_checkpoint().set("v", 1)
    cause = FailureCause(FailureKind.INFRASTRUCTURE, Reason.WORKER_LOST, "the worker running the task is gone")
    env.store.start_attempt(2).set(LEDGER_KEY, Ledger((AttemptRecord(1, cause, "grant"),)).to_json())
    env.try_number = 1
    ckpt = env.new_checkpoint()
    assert [(r.try_number, r.cause.reason, r.verdict) for r in ckpt.context.attempts] == [(1, Reason.WORKER_LOST, "grant")]


def test_head_is_rewritten_daily_by_a_long_attempt() -> None:
    from airflow_resilience.checkpoint import HEAD_REFRESH_SECONDS

    clock = FakeClock()
    store = MemoryTaskStore()
    ckpt = Checkpoint(store.start_attempt(1), AttemptId(1), clock=clock)
    ckpt.set("a", 1)
    assert ckpt.writes == 2  # document + head
    ckpt.set("a", 2)
    assert ckpt.writes == 3  # document only
    clock.now += HEAD_REFRESH_SECONDS + 1
    ckpt.set("a", 3)
    assert ckpt.writes == 5  # document + refreshed head
