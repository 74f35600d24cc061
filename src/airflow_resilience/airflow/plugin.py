"""The Airflow plugin (``airflow.plugins`` entry point).

* listeners: at task end (in the task runner) flush checkpoints and commit or release watermarks; in the
  scheduler, classify failures it decides itself and start the lost-worker detector;
* ``fastapi_apps``: the watermark endpoints on the API server (built only when Airflow asks for them);
* ``fastapi_root_middlewares``: the failure gate on the API server (:mod:`airflow_resilience.airflow.gate`);
* ``react_apps``: the "Resilience" tab of the task-instance page and the fleet page
  (:mod:`airflow_resilience.airflow.ui_api`, bundles built from ``ui/``).
"""

from __future__ import annotations

import logging
import sys

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


class _CheckpointListener:
    """Runs in the task runner process: writes batched checkpoint progress when the task ends."""

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        """Hand the core this attempt's runtime (before ``pre_execute`` and ``execute``; reads nothing)."""
        if type(task_instance).__module__ == "airflow.models.taskinstance":
            return  # not a task runner
        try:
            from airflow_resilience.airflow.host import begin_attempt

            begin_attempt(task_instance)
        except Exception:  # a listener must not change the task's outcome
            log.exception("airflow-resilience: could not set up this attempt's runtime")

    @staticmethod
    def _end_attempt() -> None:
        host = sys.modules.get("airflow_resilience.airflow.host")
        if host is not None:
            host.end_attempt()

    @staticmethod
    def _flush() -> None:
        context = sys.modules.get("airflow_resilience.context")
        if context is None or not context.open_checkpoints():  # no checkpoint was opened in this attempt
            return
        from airflow_resilience.airflow import runtime
        from airflow_resilience.errors import StaleAttemptError

        try:
            runtime.flush_open_checkpoints()
        except StaleAttemptError as exc:
            log.info("airflow-resilience: nothing written at task end, this attempt was superseded: %s", exc)
        except Exception:  # a listener must not change the task's outcome
            log.exception("airflow-resilience: could not write the checkpoint at task end")

    @staticmethod
    def _end_watermarks(succeeded: bool) -> None:
        """Commit (after success was recorded) or release what this process's watermarks hold."""
        watermark = sys.modules.get("airflow_resilience.watermark")
        if watermark is None:  # no watermark was opened in this attempt
            return
        import time

        started = time.perf_counter()
        held = len(list(watermark.open_watermarks()))
        try:
            for action in watermark.end_of_task_actions():
                try:
                    action(succeeded)
                except Exception:
                    log.exception("airflow-resilience: an end-of-task action failed (%r)", action)
            for exc in watermark.end_open_watermarks(succeeded):
                log.error(
                    "airflow-resilience: watermark %s failed at task end: %s (a held name is settled by the "
                    "next attempt that opens it: committed for a success, dropped otherwise)",
                    "commit" if succeeded else "release",
                    exc,
                )
            if held:
                log.info(
                    "airflow-resilience: %s %d watermark(s) in %.1f ms",
                    "committed" if succeeded else "released",
                    held,
                    (time.perf_counter() - started) * 1000,
                )
        except Exception:  # a listener must not change the task's outcome
            log.exception("airflow-resilience: could not end the watermarks of this task")

    @staticmethod
    def _ended(task_instance, state: str) -> None:
        execution = sys.modules.get("airflow_resilience.airflow.execution")
        if execution is not None:
            execution.mark_attempt_ended(task_instance, state)

    @staticmethod
    def _user_marked(task_instance) -> None:
        """The API server applies a user's "mark success" to a task instance whose try holds a watermark
        (it is running, or died before its hold was settled): the holds end, without committing what they
        staged — the block may not have finished publishing. The next run reads the old value again.

        Done once the user's change is committed (the request's own transaction holds the database; on
        SQLite a second connection would wait for it), and not at all if it rolls back."""
        ti_id, key = str(task_instance.id), task_instance.key

        def release(*_args) -> None:
            try:
                from airflow_resilience.airflow.watermark_db import service

                released = service().release_user_marked(ti_id)
                if released:
                    log.warning("airflow-resilience: %s was marked by a user while it held watermark(s) %s: "
                                "released, staged values discarded", key, ", ".join(released))
            except Exception:  # a listener must not change the user's action
                log.exception("airflow-resilience: could not release the watermarks of a user-marked task instance")

        try:
            from sqlalchemy import event
            from sqlalchemy.orm import object_session

            session = object_session(task_instance)
            if session is None:
                release()
            else:
                event.listen(session, "after_commit", release, once=True)
        except Exception:
            log.exception("airflow-resilience: could not schedule the release of a user-marked task instance's watermarks")

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        if type(task_instance).__module__ == "airflow.models.taskinstance":
            self._user_marked(task_instance)  # the API server applying a user's "mark success"
            return
        self._flush()
        self._end_watermarks(True)
        self._end_attempt()

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        if type(task_instance).__module__ == "airflow.models.taskinstance":
            # The ORM task instance: the scheduler is failing it itself (heartbeat timeout, executor
            # report of a task that was still running: the worker died without a word), or the API
            # server is applying a user's "mark failed" (previous_state None).
            try:
                from airflow_resilience.airflow.scheduler import on_server_side_failure

                on_server_side_failure(task_instance, error, previous_state=previous_state)
            except Exception:  # a listener must never break the scheduler loop
                log.exception("airflow-resilience: could not classify a scheduler-side failure")
            return
        self._flush()
        self._end_watermarks(False)
        self._ended(task_instance, "failed")
        self._end_attempt()

    @hookimpl
    def on_starting(self, component):
        # Airflow calls this from Job.__init__, before the job runner sets job_type.
        if type(component).__name__ != "Job":
            return
        try:
            from airflow_resilience.airflow.scheduler import is_scheduler_process, start_detector

            if is_scheduler_process():
                start_detector()
        except Exception:
            log.exception("airflow-resilience: could not start the lost-worker detector")

    @hookimpl
    def before_stopping(self, component):
        if getattr(component, "job_type", None) == "SchedulerJob":
            from airflow_resilience.airflow.scheduler import stop_detector

            stop_detector()


class _LazyFastAPIApps:
    """``fastapi_apps``, built on first access: only the API server (and ``airflow plugins``) asks."""

    _apps: list | None = None

    def __get__(self, instance, owner) -> list:
        if _LazyFastAPIApps._apps is None:
            from airflow_resilience.airflow.watermark_api import URL_PREFIX, create_app

            _LazyFastAPIApps._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "airflow-resilience"}]
        return _LazyFastAPIApps._apps


def _root_middlewares() -> list[dict]:
    from airflow_resilience.airflow.gate import FailureGate

    return [{"middleware": FailureGate, "name": "airflow-resilience failure gate"}]


def _react_apps() -> list[dict]:
    from airflow_resilience.airflow.ui_api import react_apps

    return react_apps()


class ResiliencePlugin(AirflowPlugin):
    name = "airflow_resilience"
    listeners = [_CheckpointListener()]
    fastapi_apps = _LazyFastAPIApps()  # type: ignore[assignment]
    #: The failure gate: infrastructure grants at the moment a worker reports a failure (see gate.py).
    fastapi_root_middlewares = _root_middlewares()
    react_apps = _react_apps()
