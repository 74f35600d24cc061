"""Resumable operators: resume points (the deferral pattern) and exactly-once submission of external jobs.

This module is the pure core (no Airflow import): what is saved, how a saved resume point is checked
against the operator, how the idempotency token is derived, and the ``submit_once`` decision. The
operator classes live in :mod:`airflow_resilience.airflow.operators` and are re-exported here lazily
(``from airflow_resilience.resumable import ResumableOperator`` works inside Airflow).

Resume points
-------------
``self.checkpoint(next_method="wait", run_id=...)`` saves ``{"method": "wait", "kwargs": {...}}`` in the
task's checkpoint (key ``resilience:resume``). A later attempt of the same task instance (a retry of any
cause, a drain) calls ``self.wait(context, **kwargs)`` instead of ``execute(context)``. A user *clear*
starts from ``execute()`` again (the checkpoint's clear-means-rerun rule).

submit_once
-----------
An *intent* ``{"token", "seq", "job_id": None}`` is written (and waited for) **before** ``submit(token)``
is called, the job id right after it returns (key ``resilience:submit:<key>``). A later attempt that finds:

* a job id — reconnects to it (or, when ``reuse(job_id)`` says the job is finished unsuccessfully,
  submits a new one with the next token);
* an intent without an id — the previous attempt died between recording the intent and saving the id,
  so the job may or may not exist: ``find(token)`` is asked; a job found is reconnected to, ``None`` (the
  system proves there is none) submits with the same token. Without ``find``, a system that dedupes by
  token (``dedupes_by_token=True``: Databricks, AWS ``ClientToken``...) is simply asked again with the
  same token; otherwise :class:`UnconfirmedSubmissionError` — never a silent second job.

The token is deterministic: a hash of dag id, run id, task id, map index, the checkpoint generation (a
clear moves it on, so a cleared task submits a new job), the key and a sequence number (moved on when
``reuse`` rejects a finished job).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from airflow_resilience.critical import critical
from airflow_resilience.errors import ResumeError, UnconfirmedSubmissionError
from airflow_resilience.jsonvalue import check_json

if TYPE_CHECKING:
    from airflow_resilience.checkpoint import Checkpoint

log = logging.getLogger(__name__)

RESUME_KEY = "resilience:resume"
SUBMIT_PREFIX = "resilience:submit:"
#: Databricks accepts idempotency tokens of at most 64 characters; ours are 56.
TOKEN_PREFIX = "airflow-"

_FIX = (
    "The saved point was left untouched. Inspect it with `airflow resilience checkpoint show DAG_ID RUN_ID "
    "TASK_ID`; to start again from execute() run `airflow resilience checkpoint reset DAG_ID RUN_ID TASK_ID` "
    "(or clear the task instance)"
)


# ---------------------------------------------------------------------------------------------- tokens
def idempotency_token(
    dag_id: str, run_id: str, task_id: str, map_index: int, generation: int, key: str = "job", seq: int = 0
) -> str:
    """The idempotency token of one submission: the same inputs give the same token on every attempt."""
    material = "\x1f".join(str(p) for p in (dag_id, run_id, task_id, map_index, generation, key, seq))
    return TOKEN_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:48]


@dataclass(frozen=True)
class TaskIdentity:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskIdentity:
        ti = context["ti"]
        return cls(str(ti.dag_id), str(ti.run_id), str(ti.task_id), int(getattr(ti, "map_index", -1) or -1))


# ---------------------------------------------------------------------------------------------- resume
@dataclass(frozen=True)
class ResumePoint:
    method: str
    kwargs: dict[str, Any]
    saved_by_try: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "kwargs": self.kwargs, "saved_by_try": self.saved_by_try}

    @classmethod
    def from_json(cls, raw: Any) -> ResumePoint:
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("method"), str)
            or not isinstance(raw.get("kwargs", {}), dict)
        ):
            raise ResumeError(
                f"saved resume point {RESUME_KEY!r} is {raw!r}, expected "
                f"{{'method': <name>, 'kwargs': {{...}}}}. {_FIX}"
            )
        return cls(raw["method"], dict(raw.get("kwargs", {})), raw.get("saved_by_try"))


def resolve(operator: Any, method: str, kwargs: Mapping[str, Any], *, saved: bool) -> Callable[..., Any]:
    """The bound method ``method`` of ``operator``, checked to accept ``(context, **kwargs)``.

    ``saved`` says whether the point comes from the store (a later attempt) or is being saved now: the
    message then tells what to do.
    """
    cls_name = type(operator).__name__
    where = "saved resume point" if saved else "checkpoint(next_method=...)"
    fix = _FIX if saved else "Name a method of the operator that takes (context, **kwargs)"
    if not isinstance(method, str) or not method.isidentifier() or method.startswith("__"):
        raise ResumeError(f"{where}: next_method {method!r} is not a method name. {fix}")
    target = getattr(operator, method, None)
    if target is None or not callable(target):
        known = _own_methods(type(operator))
        raise ResumeError(
            f"{where}: {cls_name} has no method {method!r} (the operator's own methods: {', '.join(known)}). "
            f"{fix}"
        )
    try:
        inspect.signature(target).bind(None, **kwargs)
    except TypeError as exc:
        raise ResumeError(
            f"{where}: {cls_name}.{method}{inspect.signature(target)} does not accept (context, "
            f"**{sorted(kwargs)}): {exc}. {fix}"
        ) from None
    return target


def _own_methods(cls: type) -> list[str]:
    """Public methods the author's classes define (not Airflow's, not this package's): resume targets."""
    names: set[str] = set()
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(("airflow.", "airflow_resilience.", "builtins", "abc", "typing")):
            continue
        names.update(
            name for name, value in vars(klass).items()
            if not name.startswith("_") and name != "execute" and callable(value)
        )
    return sorted(names)


def save_resume_point(ckpt: Checkpoint, operator: Any, method: str, kwargs: dict[str, Any]) -> ResumePoint:
    """Check and durably save a resume point (written before this returns)."""
    resolve(operator, method, kwargs, saved=False)
    check_json(f"{RESUME_KEY}:{method}", kwargs)
    point = ResumePoint(method, kwargs, ckpt.attempt.try_number)
    ckpt.set(RESUME_KEY, point.to_json())
    ckpt.flush()
    return point


def saved_resume_point(ckpt: Checkpoint) -> ResumePoint | None:
    raw = ckpt.get(RESUME_KEY)
    if raw is None:
        return None
    try:
        return ResumePoint.from_json(raw)
    except ResumeError:
        ckpt.leave_untouched()
        raise


# ---------------------------------------------------------------------------------------------- submit
@dataclass(frozen=True)
class Submission:
    """What ``submit_once`` decided, for logs and tests."""

    job_id: Any
    token: str
    #: "submitted" (a new job), "reconnected" (saved id), "found" (an intent's job found by token),
    #: "resubmitted-same-token" (an intent, the system dedupes), "resubmitted-new-token" (reuse said no)
    outcome: str
    seq: int


def submit_once(
    ckpt: Checkpoint,
    identity: TaskIdentity,
    submit: Callable[[str], Any],
    find: Callable[[str], Any] | None = None,
    *,
    key: str = "job",
    reuse: Callable[[Any], bool] | None = None,
    dedupes_by_token: bool = False,
) -> Submission:
    """Submit an external job at most once per task instance and generation; see the module docs."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"submit_once key must be a non-empty string, got {key!r}")
    record_key = SUBMIT_PREFIX + key
    raw = ckpt.get(record_key)
    seq = 0
    if raw is not None:
        if not isinstance(raw, dict) or not isinstance(raw.get("token"), str) or not isinstance(raw.get("seq"), int):
            ckpt.leave_untouched()
            raise ResumeError(
                f"saved submission {record_key!r} is {raw!r}, expected {{'token', 'seq', 'job_id'}}. {_FIX}"
            )
        token, seq = raw["token"], raw["seq"]
        job_id = raw.get("job_id")
        if job_id is not None:
            if reuse is None or reuse(job_id):
                log.info("airflow-resilience: reconnecting to job %s (submitted by try %s)", job_id, raw.get("try"))
                return Submission(job_id, token, "reconnected", seq)
            log.warning("airflow-resilience: job %s is not reusable (finished unsuccessfully): submitting a new one", job_id)
            seq += 1
            outcome = "resubmitted-new-token"
        else:
            # Died between the intent and the id: does the job exist?
            if find is not None:
                found = find(token)
                if found is not None:
                    _record(ckpt, record_key, token, seq, found)
                    log.info("airflow-resilience: found job %s by its idempotency token %s", found, token)
                    if reuse is None or reuse(found):
                        return Submission(found, token, "found", seq)
                    seq += 1
                    outcome = "resubmitted-new-token"
                else:
                    log.info("airflow-resilience: no job has token %s: submitting it now", token)
                    return _submit(ckpt, record_key, token, seq, submit, "submitted")
            elif dedupes_by_token:
                log.info("airflow-resilience: an earlier try may have submitted with token %s; the system dedupes "
                         "by token, asking again", token)
                return _submit(ckpt, record_key, token, seq, submit, "resubmitted-same-token")
            else:
                ckpt.leave_untouched()
                raise UnconfirmedSubmissionError(
                    f"submit_once(key={key!r}): try {raw.get('try')} recorded the intent to submit with token "
                    f"{token!r} but no job id, so it may have submitted a job. Nothing can tell: give "
                    "submit_once a find= function (job id or None for a token), or dedupes_by_token=True when "
                    "the system returns the existing job for a repeated token. Check the external system by "
                    "that token; then `airflow resilience checkpoint reset DAG_ID RUN_ID TASK_ID` to submit "
                    "again. The saved intent was left untouched"
                )
    else:
        outcome = "submitted"
    token = idempotency_token(
        identity.dag_id, identity.run_id, identity.task_id, identity.map_index, ckpt.generation, key, seq
    )
    return _submit(ckpt, record_key, token, seq, submit, outcome)


def _submit(ckpt: Checkpoint, record_key: str, token: str, seq: int, submit, outcome: str) -> Submission:
    # The intent is durable before the external call: a kill after the call is then recognisable.
    ckpt.set(record_key, {"token": token, "seq": seq, "job_id": None, "try": ckpt.attempt.try_number,
                          "at": time.time()})
    ckpt.flush()
    # A SIGTERM drain waits from the call until the id is saved (a hard kill cannot be held off: that is
    # what the intent above and find= are for).
    with critical():
        job_id = submit(token)
        if job_id is None:
            raise ValueError(f"submit_once: submit(token) returned None for token {token!r}; it must return the job id")
        _record(ckpt, record_key, token, seq, job_id)
    return Submission(job_id, token, outcome, seq)


def _record(ckpt: Checkpoint, record_key: str, token: str, seq: int, job_id: Any) -> None:
    check_json(f"{record_key}:job_id", job_id)
    ckpt.set(record_key, {"token": token, "seq": seq, "job_id": job_id, "try": ckpt.attempt.try_number,
                          "at": time.time()})
    ckpt.flush()


# ---------------------------------------------------------------------------------------------- adapter
@dataclass(frozen=True)
class JobStatus:
    """State of an external job: ``running``, ``succeeded`` or ``failed``; ``result`` becomes the XCom."""

    state: str
    result: Any = None
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


@runtime_checkable
class ExternalJob(Protocol):
    """What an external system offers to run one job resumably (see ``docs/operators.md``)."""

    #: True when submitting twice with the same token returns the first job (no second one).
    dedupes_by_token: bool

    def submit(self, token: str) -> Any:
        """Start the job, passing ``token`` to the system when it accepts one. Returns the job id (JSON)."""

    def find(self, token: str) -> Any | None:
        """The id of the job submitted with ``token``, or None when the system has none.

        Raise ``NotImplementedError`` when the system cannot look jobs up by token."""
        raise NotImplementedError

    def status(self, job_id: Any) -> JobStatus:
        """The job's state now."""

    def cancel(self, job_id: Any) -> None:
        """Stop the job (called when a user stops the task, never on a drain)."""

