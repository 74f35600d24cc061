"""Resumable operators on Airflow's Task SDK (the pure rules are in :mod:`airflow_resilience.resumable`).

* :class:`ResumableOperator` — ``self.checkpoint(next_method=..., **kwargs)`` saves a resume point; a later
  attempt enters that method instead of ``execute()``. ``self.submit_once(...)`` submits an external job
  at most once per task instance and generation.
* :class:`ExternalJobOperator` — run any :class:`~airflow_resilience.resumable.ExternalJob` resumably.
* :class:`SubmitOnceMixin` — put it in front of an operator that uses Airflow's ``ResumableJobMixin`` to
  close the window between ``submit_job`` returning and the job id being saved, and to make a clear
  submit a new job.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseOperator

from airflow_resilience.airflow import metrics
from airflow_resilience.checkpoint import Checkpoint
from airflow_resilience.errors import ResumeError, UnconfirmedSubmissionError
from airflow_resilience.resumable import (
    ExternalJob,
    JobStatus,
    ResumePoint,
    Submission,
    TaskIdentity,
    resolve,
    save_resume_point,
    saved_resume_point,
    submit_once,
)

log = logging.getLogger(__name__)


def _submit_once_for(operator: Any, context: Any, submit, find, **kwargs: Any) -> Submission:
    """:func:`submit_once` for the running task instance of ``operator``, logged and counted."""
    sub = submit_once(Checkpoint.current(), TaskIdentity.from_context(context), submit, find, **kwargs)
    operator.log.info("airflow-resilience: job %s (%s, token %s)", sub.job_id, sub.outcome, sub.token)
    metrics.incr("resilience.submissions", operator=type(operator).__name__, outcome=sub.outcome)
    return sub


def _resume_entry(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a class's ``execute``: enter the saved resume point instead, when there is one."""

    @functools.wraps(execute)
    def entry(self: ResumableOperator, context: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_resilience_entered", False):  # super().execute() of a subclass: no second dispatch
            return execute(self, context, *args, **kwargs)
        self._resilience_entered = True
        try:
            ckpt = Checkpoint.current()
            point = saved_resume_point(ckpt)
            if point is None:
                return execute(self, context, *args, **kwargs)
            try:
                method = resolve(self, point.method, point.kwargs, saved=True)
            except ResumeError:
                ckpt.leave_untouched()  # keep the saved point where it is, for inspection
                raise
            self.log.info(
                "airflow-resilience: resuming at %s(%s) saved by try %s, instead of execute()",
                point.method, ", ".join(sorted(point.kwargs)), point.saved_by_try,
            )
            self.resumed_from = point
            metrics.incr("resilience.resumes", operator=type(self).__name__, method=point.method)
            return method(context, **point.kwargs)
        finally:
            self._resilience_entered = False

    entry._airflow_resilience_resume = True  # type: ignore[attr-defined]
    return entry


class ResumableOperator(BaseOperator):
    """An operator whose later attempts enter at the method named by its last :meth:`checkpoint`.

    .. code-block:: python

        class RunJob(ResumableOperator):
            def execute(self, context):
                run_id = self.submit_once(context, submit=lambda token: client.submit(spec, token),
                                          find=client.find_by_token)
                self.checkpoint(next_method="wait", run_id=run_id)
                return self.wait(context, run_id=run_id)

            def wait(self, context, run_id):   # a resumed attempt enters here
                return client.wait(run_id)
    """

    #: The resume point this attempt entered at (None when it started in ``execute``).
    resumed_from: ResumePoint | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if callable(execute) and not getattr(execute, "_airflow_resilience_resume", False):
            cls.execute = _resume_entry(execute)

    def checkpoint(self, next_method: str, **kwargs: Any) -> None:
        """Save a resume point: a later attempt calls ``self.<next_method>(context, **kwargs)``.

        Checked now (the method exists and accepts these kwargs; the kwargs are JSON) and written before
        this returns, fenced like every checkpoint (a stale attempt's write is refused).
        """
        save_resume_point(Checkpoint.current(), self, next_method, kwargs)

    def submit_once(
        self,
        context: Any,
        submit: Callable[[str], Any],
        find: Callable[[str], Any] | None = None,
        *,
        key: str = "job",
        reuse: Callable[[Any], bool] | None = None,
        dedupes_by_token: bool = False,
    ) -> Any:
        """Submit an external job at most once; returns its id. See :func:`airflow_resilience.resumable.submit_once`."""
        return self.submit_once_detail(
            context, submit, find, key=key, reuse=reuse, dedupes_by_token=dedupes_by_token
        ).job_id

    def submit_once_detail(self, context: Any, submit, find=None, **kwargs: Any) -> Submission:
        return _submit_once_for(self, context, submit, find, **kwargs)


class ExternalJobOperator(ResumableOperator):
    """Run one job of an external system resumably: submitted once, reconnected to after any kill.

    Subclasses implement :meth:`job` (an :class:`~airflow_resilience.resumable.ExternalJob`). The job's
    result is the task's XCom; a failed job fails the task (an application failure: ``retries`` apply,
    and a retry submits a new job).
    """

    def __init__(self, *, poll_interval: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_interval = poll_interval
        self.job_id: Any = None
        #: True once this try has submitted (or reused) the job itself; False when the try entered
        #: ``wait_for_job`` by resuming a job id saved by an earlier try.
        self.submitted_this_try = False

    def job(self, context: Any) -> ExternalJob:
        raise NotImplementedError(f"{type(self).__name__} must implement job(context) -> ExternalJob")

    def execute(self, context: Any) -> Any:
        job = self.job(context)

        def reusable(job_id: Any) -> bool:
            return job.status(job_id).state != "failed"

        def find(token: str) -> Any:
            try:
                return job.find(token)
            except NotImplementedError:
                if getattr(job, "dedupes_by_token", False):
                    return None  # submitting again with the same token returns the first job
                raise UnconfirmedSubmissionError(
                    f"{type(job).__name__}: an earlier try recorded the intent to submit with token {token!r} "
                    "but no job id, and this system can neither find a job by token (find) nor dedupes by "
                    "token (dedupes_by_token). Check the system for that token, then `airflow resilience "
                    "checkpoint reset DAG_ID RUN_ID TASK_ID` to submit again"
                ) from None

        self.job_id = self.submit_once(context, job.submit, find, reuse=reusable)
        self.submitted_this_try = True
        self.checkpoint(next_method="wait_for_job", job_id=self.job_id)
        return self.wait_for_job(context, job_id=self.job_id)

    def wait_for_job(self, context: Any, job_id: Any) -> Any:
        self.job_id = job_id
        job = self.job(context)
        while True:
            status: JobStatus = job.status(job_id)
            if status.state == "succeeded":
                return status.result
            if status.state == "failed":
                from airflow.sdk.exceptions import AirflowException

                raise AirflowException(f"external job {job_id} failed: {status.message}")
            time.sleep(self.poll_interval)

    def on_kill(self) -> None:
        # Called on a user's stop (and on SIGTERM when the package's drain is off), never on a drain.
        if self.job_id is not None:
            try:
                self.job(None).cancel(self.job_id)
            except Exception:
                self.log.exception("could not cancel external job %s", self.job_id)


class SubmitOnceMixin:
    """Close the submit window of Airflow's ``ResumableJobMixin``; make a clear submit a new job.

    ``class MyOperator(SubmitOnceMixin, AirflowOperatorUsingResumableJobMixin)``. It replaces
    ``execute_resumable`` with the same decision (reconnect / already succeeded / submit) made on
    :func:`submit_once` records: an intent with a deterministic token is saved *before* ``submit_job``,
    so a kill between the submit and the saved id is recognised. Override :meth:`submit_job_with_token`
    to pass the token to the system, and either set ``token_dedupes_submission = True`` (the system
    returns the first job for a repeated token) or implement :meth:`find_job`.
    """

    token_dedupes_submission: bool = False

    def submit_job_with_token(self, context: Any, token: str) -> Any:
        return self.submit_job(context)  # type: ignore[attr-defined]

    def find_job(self, token: str, context: Any) -> Any | None:
        raise NotImplementedError

    def _job_reusable(self, external_id: Any, context: Any) -> bool:
        status = self.get_job_status(external_id, context)  # type: ignore[attr-defined]
        self._resilience_status = (external_id, status)
        return bool(self.is_job_active(status) or self.is_job_succeeded(status))  # type: ignore[attr-defined]

    def submit_once_for(self, context: Any) -> Submission:
        has_find = type(self).find_job is not SubmitOnceMixin.find_job
        return _submit_once_for(
            self,
            context,
            lambda token: self.submit_job_with_token(context, token),
            (lambda token: self.find_job(token, context)) if has_find else None,
            key=getattr(self, "external_id_key", "job"),
            reuse=lambda external_id: self._job_reusable(external_id, context),
            dedupes_by_token=self.token_dedupes_submission,
        )

    def execute_resumable(self, context: Any) -> Any:
        if not getattr(self, "durable", True):
            return super().execute_resumable(context)  # type: ignore[misc]
        sub = self.submit_once_for(context)
        external_id = sub.job_id
        known = getattr(self, "_resilience_status", None)
        status = known[1] if known and known[0] == external_id else self.get_job_status(external_id, context)  # type: ignore[attr-defined]
        if sub.outcome != "submitted" and self.is_job_succeeded(status):  # type: ignore[attr-defined]
            self.log.info("airflow-resilience: job %s already succeeded; not polling", external_id)  # type: ignore[attr-defined]
            return self.get_job_result(external_id, context)  # type: ignore[attr-defined]
        self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]
        return self.get_job_result(external_id, context)  # type: ignore[attr-defined]
