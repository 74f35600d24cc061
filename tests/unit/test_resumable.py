"""submit_once and resume points: the pure rules, on the in-memory store with Airflow's fencing."""

from __future__ import annotations

import pytest

from airflow_resilience.errors import ResumeError, UnconfirmedSubmissionError
from airflow_resilience.resumable import (
    RESUME_KEY,
    SUBMIT_PREFIX,
    ResumePoint,
    TaskIdentity,
    idempotency_token,
    resolve,
    save_resume_point,
    saved_resume_point,
    submit_once,
)
from airflow_resilience.testing import CheckpointEnvironment

ID = TaskIdentity("dag", "run-1", "task", -1)


class Killed(BaseException):
    """Plays a SIGKILL: nothing after it runs in this attempt."""


class System:
    """An external system: jobs by token, optional dedup, counts submissions."""

    def __init__(self, dedupes: bool = False) -> None:
        self.jobs: dict[str, int] = {}
        self.submits = 0
        self.dedupes = dedupes
        self.failed: set[int] = set()
        self.intent_seen: list[bool] = []

    def submit(self, token: str, env: CheckpointEnvironment | None = None, kill_after: bool = False) -> int:
        if env is not None:  # the intent must be durable before the external call
            self.intent_seen.append(any(k.startswith("resilience:checkpoint:try") and
                                        any(sk.startswith(SUBMIT_PREFIX) for sk in v.get("values", {}))
                                        for k, v in env.saved().items()))
        if self.dedupes and token in self.jobs:
            return self.jobs[token]
        self.submits += 1
        job = 100 + self.submits
        self.jobs[token] = job
        if kill_after:
            raise Killed()
        return job

    def find(self, token: str) -> int | None:
        return self.jobs.get(token)


def test_token_is_deterministic_and_fits_databricks():
    a = idempotency_token("d", "r", "t", -1, 0)
    assert a == idempotency_token("d", "r", "t", -1, 0)
    assert len(a) <= 64
    others = {
        idempotency_token("d", "r", "t", 0, 0), idempotency_token("d", "r", "t", -1, 1),
        idempotency_token("d", "r", "t", -1, 0, key="other"), idempotency_token("d", "r", "t", -1, 0, seq=1),
        idempotency_token("d", "r2", "t", -1, 0), idempotency_token("d", "r", "t2", -1, 0),
    }
    assert a not in others and len(others) == 6


@pytest.mark.parametrize(
    "find, dedupes, outcome, submits",
    [
        ("find", False, "found", 1),  # the job exists: found by token, reconnected
        (None, True, "resubmitted-same-token", 1),  # the system dedupes: asking again returns the job
    ],
)
def test_kill_between_submit_and_saved_id_never_submits_twice(find, dedupes, outcome, submits):
    env, system = CheckpointEnvironment(retries=1), System(dedupes=dedupes)
    with env.attempt() as ckpt:
        with pytest.raises(Killed):
            submit_once(ckpt, ID, lambda t: system.submit(t, env, kill_after=True))
    assert system.intent_seen == [True]
    with env.attempt() as ckpt:
        sub = submit_once(ckpt, ID, system.submit, system.find if find else None, dedupes_by_token=dedupes)
    assert (sub.outcome, system.submits, sub.job_id) == (outcome, submits, 101)


def test_intent_without_job_and_find_says_none_submits_with_the_same_token():
    env, system = CheckpointEnvironment(retries=1), System()
    with env.attempt() as ckpt:
        with pytest.raises(Killed):
            submit_once(ckpt, ID, lambda t: (_ for _ in ()).throw(Killed()))  # killed before the request
    with env.attempt() as ckpt:
        sub = submit_once(ckpt, ID, system.submit, system.find)
    assert sub.outcome == "submitted" and system.submits == 1
    assert sub.token == idempotency_token("dag", "run-1", "task", -1, 0)


def test_intent_without_find_or_dedup_is_a_clear_error_and_keeps_the_intent():
    env, system = CheckpointEnvironment(retries=1), System()
    with env.attempt() as ckpt:
        with pytest.raises(Killed):
            submit_once(ckpt, ID, lambda t: system.submit(t, kill_after=True), key="load")
    before = env.saved()
    with env.attempt() as ckpt:
        with pytest.raises(UnconfirmedSubmissionError, match=r"key='load'.*find=.*dedupes_by_token=True.*reset"):
            submit_once(ckpt, ID, system.submit, key="load")
    assert system.submits == 1
    assert env.saved() == before  # the end-of-attempt flush did not move the intent into try 2's document


@pytest.mark.parametrize("reusable, outcome, submits, seq", [(True, "reconnected", 1, 0), (False, "resubmitted-new-token", 2, 1)])
def test_saved_job_is_reconnected_unless_it_failed(reusable, outcome, submits, seq):
    env, system = CheckpointEnvironment(retries=1), System()
    with env.attempt() as ckpt:
        first = submit_once(ckpt, ID, system.submit)
    with env.attempt() as ckpt:
        sub = submit_once(ckpt, ID, system.submit, reuse=lambda job: reusable)
    assert (sub.outcome, system.submits, sub.seq) == (outcome, submits, seq)
    assert (sub.token == first.token) is reusable


def test_clear_submits_a_new_job_with_a_new_token():
    env, system = CheckpointEnvironment(retries=0), System(dedupes=True)
    with env.attempt() as ckpt:
        first = submit_once(ckpt, ID, system.submit, dedupes_by_token=True)
    env.clear()
    with env.attempt() as ckpt:
        again = submit_once(ckpt, ID, system.submit, dedupes_by_token=True)
    assert again.outcome == "submitted" and again.token != first.token and system.submits == 2
    assert again.token == idempotency_token("dag", "run-1", "task", -1, 1)


def test_corrupt_submission_record_is_a_clear_error():
    env = CheckpointEnvironment(retries=1)
    with env.attempt() as ckpt:
        ckpt.set(SUBMIT_PREFIX + "job", {"token": 3})
    with env.attempt() as ckpt:
        with pytest.raises(ResumeError, match="resilience:submit:job.*checkpoint reset"):
            submit_once(ckpt, ID, lambda t: 1)


# ------------------------------------------------------------------ resume points
class Op:
    def execute(self, context):
        return "execute"

    def wait(self, context, run_id, polls=0):
        return ("wait", run_id, polls)

    def cleanup(self, context, *, cluster):
        return ("cleanup", cluster)

    not_callable = 3


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("nope", {}, r"Op has no method 'nope' \(the operator's own methods: cleanup, wait\)"),
        ("not_callable", {}, "has no method 'not_callable'"),
        ("__init__", {}, "is not a method name"),
        ("wait", {}, r"Op.wait\(context, run_id, polls=0\) does not accept \(context, \*\*\[\]\)"),
        ("wait", {"run_id": 1, "extra": 2}, "does not accept"),
        ("cleanup", {"size": 1}, "does not accept"),
    ],
)
def test_resume_target_must_exist_and_fit(method, kwargs, message):
    with pytest.raises(ResumeError, match=message) as saved:
        resolve(Op(), method, kwargs, saved=True)
    assert "checkpoint reset" in str(saved.value)
    with pytest.raises(ResumeError, match="Name a method of the operator"):
        resolve(Op(), method, kwargs, saved=False)


def test_resume_point_round_trip_and_bad_records():
    env = CheckpointEnvironment(retries=1)
    with env.attempt() as ckpt:
        assert saved_resume_point(ckpt) is None
        save_resume_point(ckpt, Op(), "wait", {"run_id": 7})
        with pytest.raises(ResumeError):
            save_resume_point(ckpt, Op(), "wiat", {"run_id": 7})  # refused at save time: nothing saved
    with env.attempt() as ckpt:
        point = saved_resume_point(ckpt)
        assert point == ResumePoint("wait", {"run_id": 7}, 1)
        assert resolve(Op(), point.method, point.kwargs, saved=True)(None, **point.kwargs) == ("wait", 7, 0)
        ckpt.set(RESUME_KEY, ["wait"])
    before = env.saved()
    with env.attempt() as ckpt:
        with pytest.raises(ResumeError, match="expected"):
            saved_resume_point(ckpt)
    assert env.saved() == before  # left untouched for inspection


def test_non_json_kwargs_are_refused_at_save_time():
    import datetime

    from airflow_resilience.errors import CheckpointValueError

    env = CheckpointEnvironment()
    with env.attempt() as ckpt:
        with pytest.raises(CheckpointValueError, match="datetime"):
            save_resume_point(ckpt, Op(), "wait", {"run_id": datetime.datetime.now()})
        assert saved_resume_point(ckpt) is None
