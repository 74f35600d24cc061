"""Airflow's task state store (AIP-103) as a :class:`~airflow_resilience.store.CheckpointStore`.

It sends the same supervisor messages as ``context["task_state_store"]`` but reads the answers:
``TaskStateStoreAccessor.set`` ignores an error response, so a write refused by the API server (for
example from an attempt whose task instance id is no longer current) would be dropped silently. Here a
refusal with 401/403/404/409 becomes :class:`StaleAttemptError` and anything else
:class:`CheckpointStoreError`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from airflow_resilience.errors import CheckpointStoreError, StaleAttemptError

_FENCED_STATUS = {401, 403, 404, 409}


class TaskStateStore:
    """The state store of the running task instance, spoken to through the task supervisor."""

    def __init__(self, ti_id: UUID, *, max_value_bytes: int, retention_days: int) -> None:
        self._ti_id = ti_id
        self.max_value_bytes = max_value_bytes
        self._retention_days = retention_days

    @staticmethod
    def _comms():
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        return SUPERVISOR_COMMS

    def get(self, key: str) -> Any | None:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, GetTaskStateStore

        resp = self._comms().send(GetTaskStateStore(ti_id=self._ti_id, key=key))
        if isinstance(resp, ErrorResponse):
            if resp.error == ErrorType.TASK_STORE_NOT_FOUND:
                return None
            raise CheckpointStoreError(f"reading task state key {key!r} failed: {resp.detail}")
        return resp.value

    def set(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.comms import ErrorResponse, SetTaskStateStore

        expires_at = None
        if self._retention_days > 0:
            expires_at = datetime.now(tz=timezone.utc) + timedelta(days=self._retention_days)
        resp = self._comms().send(
            SetTaskStateStore(ti_id=self._ti_id, key=key, value=value, expires_at=expires_at)
        )
        if isinstance(resp, ErrorResponse):
            self._raise(key, "write", resp)

    def delete(self, key: str) -> None:
        from airflow.sdk.execution_time.comms import DeleteTaskStateStore, ErrorResponse

        resp = self._comms().send(DeleteTaskStateStore(ti_id=self._ti_id, key=key))
        if isinstance(resp, ErrorResponse):
            self._raise(key, "delete", resp)

    def _raise(self, key: str, what: str, resp: Any) -> None:
        detail = resp.detail if isinstance(resp.detail, dict) else {}
        status = detail.get("status_code")
        if status in _FENCED_STATUS:
            raise StaleAttemptError(
                f"{what} of task state key {key!r} refused by the API server (HTTP {status}): task instance "
                f"try {self._ti_id} is no longer the current attempt, a newer attempt owns the checkpoint. "
                "Nothing was overwritten"
            )
        raise CheckpointStoreError(f"{what} of task state key {key!r} failed: {resp.error} {resp.detail}")
