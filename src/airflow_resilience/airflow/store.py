"""Airflow's task state store (AIP-103) as a :class:`~airflow_resilience.store.CheckpointStore`.

It sends the same supervisor messages as ``context["task_state_store"]`` and translates the answers: a
write refused by the API server because this attempt's task instance id is no longer current (a newer try
got a new id) surfaces from the Task SDK as a generic ``AirflowRuntimeError: API_SERVER_ERROR ... 404``;
here a refusal with HTTP 404 (the execution API's answer for a task instance id that is no longer
current) becomes :class:`StaleAttemptError`, which says what happened. Anything else, 401/403 (an
authentication problem, not fencing) and 5xx included, is :class:`CheckpointStoreError` (a checkpoint's
store asks up to three more times first, ``RETRY_PAUSES``). A read of a key that does not exist is ``None``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn
from uuid import UUID

from airflow_resilience.errors import CheckpointStoreError, StaleAttemptError

log = logging.getLogger(__name__)

#: The execution API answers 404 for a task instance id that is no longer current (a newer try got a new
#: id). 401/403 are authentication problems, not fencing: they stay retryable store errors.
_FENCED_STATUS = {404}
#: Pauses before asking again after a store error that is not fencing.
RETRY_PAUSES = (0.5, 1.0, 2.0)


def _hold_alarm() -> tuple[Any, list] | None:
    """Hold Airflow's execution-timeout alarm (a SIGALRM handler that raises) for the length of a call.

    The handler is swapped for one that only records the signal; :func:`_release_alarm` puts it back and
    runs it if the alarm went off meanwhile. (Blocking the signal would not do: in a process with several
    threads the kernel hands a process signal to any thread that does not block it.)
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGALRM)
    if not callable(previous):  # no timeout armed by a handler
        return None
    pending: list = []
    signal.signal(signal.SIGALRM, lambda signum, frame: pending.append((signum, frame)))
    return previous, pending


def _release_alarm(held: tuple[Any, list] | None) -> None:
    if held is None:
        return
    import signal

    previous, pending = held
    signal.signal(signal.SIGALRM, previous)
    if pending:
        previous(*pending[0])  # the timeout fires now, after the answer was read


class TaskStateStore:
    """The state store of the running task instance, spoken to through the task supervisor."""

    def __init__(self, ti_id: UUID, *, max_value_bytes: int, retention_days: int, retrying: bool = True,
                 write_timer: str | None = None) -> None:
        self._ti_id = ti_id
        self.max_value_bytes = max_value_bytes
        self._retention_days = retention_days
        #: Checkpoints try again on a busy database; the package's own bookkeeping asks once and, on an
        #: error, lets the task run as stock Airflow would.
        self._retrying = retrying
        #: Timer metric of each completed write (the checkpoint's store: ``resilience.checkpoint.write``).
        self._write_timer = write_timer

    @classmethod
    def for_task_instance(cls, ti: Any, *, retrying: bool = True, write_timer: str | None = None) -> TaskStateStore:
        """The store of a running task instance, with Airflow's ``[state_store]`` limit and retention."""
        from airflow.sdk.configuration import conf

        return cls(
            ti.id,
            max_value_bytes=conf.getint("state_store", "max_value_storage_bytes", fallback=65535),
            retention_days=conf.getint("state_store", "default_retention_days", fallback=0),
            retrying=retrying,
            write_timer=write_timer,
        )

    def _send(self, key: str, what: str, msg: Any) -> Any:
        from airflow.sdk.exceptions import AirflowRuntimeError

        from airflow_resilience import critical
        from airflow_resilience.airflow.compat import comms_messages, supervisor_comms

        ErrorResponse = comms_messages()["error"]

        # A SIGTERM drain that arrives during the call is delivered again after it, never mid-request; an
        # execution_timeout alarm (SIGALRM) is held until the answer is read: an exception raised in the
        # middle of a request would leave its answer in the socket for the next request to read.
        critical.enter()
        held = _hold_alarm()
        try:
            resp = supervisor_comms().send(msg)
        except AirflowRuntimeError as exc:
            self._raise(key, what, exc.error)
        finally:
            critical.leave()
            _release_alarm(held)  # last: a pending timeout raises from here
        if isinstance(resp, ErrorResponse):
            from airflow.sdk.exceptions import ErrorType

            if what != "read" or resp.error != ErrorType.TASK_STORE_NOT_FOUND:
                self._raise(key, what, resp)
        return resp

    def _send_retrying(self, key: str, what: str, msg: Any) -> Any:
        """``_send`` with up to 3 more tries, 0.5-2 s apart, for errors that are not fencing (a metadata
        database busy with another writer, e.g. SQLite, answers 500). Writes are idempotent."""
        if not self._retrying:
            return self._send(key, what, msg)
        for pause in RETRY_PAUSES:
            try:
                return self._send(key, what, msg)
            except CheckpointStoreError as exc:
                log.warning("%s; trying again in %.1fs", exc, pause)
                time.sleep(pause)
        return self._send(key, what, msg)

    def get(self, key: str) -> Any | None:
        from airflow.sdk.exceptions import ErrorType

        from airflow_resilience.airflow.compat import comms_messages

        msgs = comms_messages()
        resp = self._send_retrying(key, "read", msgs["get"](ti_id=self._ti_id, key=key))
        if isinstance(resp, msgs["error"]) and resp.error == ErrorType.TASK_STORE_NOT_FOUND:
            return None
        return resp.value

    def set(self, key: str, value: Any, *, retention_days: int | None = None) -> None:
        """Write ``key``; kept ``retention_days`` (default: ``[state_store] default_retention_days``)."""
        from airflow_resilience.airflow.compat import comms_messages

        days = self._retention_days if retention_days is None else retention_days
        expires_at = None
        if days > 0:
            expires_at = datetime.now(tz=timezone.utc) + timedelta(days=days)
        started = time.perf_counter()
        self._send_retrying(key, "write", comms_messages()["set"](ti_id=self._ti_id, key=key, value=value, expires_at=expires_at))
        if self._write_timer is not None:  # in this module: a SIGTERM drain waits until the metric is sent
            from airflow_resilience.airflow import metrics

            metrics.timing(self._write_timer, (time.perf_counter() - started) * 1000)

    def delete(self, key: str) -> None:
        from airflow_resilience.airflow.compat import comms_messages

        self._send_retrying(key, "delete", comms_messages()["delete"](ti_id=self._ti_id, key=key))

    def _raise(self, key: str, what: str, resp: Any) -> NoReturn:
        detail = resp.detail if isinstance(resp.detail, dict) else {}
        status = detail.get("status_code")
        if status in _FENCED_STATUS:
            raise StaleAttemptError(
                f"{what} of task state key {key!r} refused by the API server (HTTP {status}): task instance "
                f"try {self._ti_id} is no longer the current attempt, a newer attempt owns the checkpoint. "
                "Nothing was overwritten"
            )
        raise CheckpointStoreError(f"{what} of task state key {key!r} failed: {resp.error} {resp.detail}")
