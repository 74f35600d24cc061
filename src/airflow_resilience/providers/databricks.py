"""Resumable Databricks operators: exactly one run per task instance, across any kill, sync and deferrable.

.. code-block:: python

    from airflow_resilience.providers.databricks import ResumableDatabricksSubmitRunOperator

    ResumableDatabricksSubmitRunOperator(task_id="train", json={...})   # same arguments as the provider's

What changes against ``apache-airflow-providers-databricks``:

* every submit (``runs/submit``, ``jobs/run-now``) carries a deterministic ``idempotency_token``, and the
  intent to submit is saved *before* the request; Databricks returns the existing run for a repeated
  token, so a try killed between the request and the saved run id reconnects instead of starting a
  second run (the provider's ``ResumableJobMixin`` path submits again there);
* the deferrable path makes the same decision before ``defer()``: reconnect, already finished, or
  submit — the provider's deferrable path always submits;
* a user *clear* submits a new run (the provider's saved run id survives a clear, so a cleared task
  that succeeded returns at once without running);
* a retry after the run *failed* submits a new run with the next token;
* a SIGTERM drain (eviction) does not cancel the run — the next attempt reconnects to it. A user's stop
  still cancels it (``on_kill``).

A token the author passes (``idempotency_token=...``) is used as given: its dedup then spans clears too.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.databricks.operators.databricks import (
    DatabricksRunNowOperator,
    DatabricksSubmitRunOperator,
)

from airflow_resilience.airflow.compat import databricks_deferrable_execution
from airflow_resilience.airflow.operators import SubmitOnceMixin


class ResumableDatabricksMixin(SubmitOnceMixin):
    """Makes a Databricks run operator submit once and reconnect (see the module docs)."""

    token_dedupes_submission = True

    def _databricks_submit(self, context: Any, token: str) -> int:
        raise NotImplementedError

    def submit_job_with_token(self, context: Any, token: str) -> int:
        token = getattr(self, "idempotency_token", None) or token
        self.run_id = self._databricks_submit(context, token)
        self.log.info("Run submitted with run_id: %s (idempotency token %s)", self.run_id, token)  # type: ignore[attr-defined]
        return self.run_id

    def execute(self, context: Any) -> Any:
        if not getattr(self, "deferrable", False):
            return self.execute_resumable(context)
        # The decision runs before defer(): a try killed around deferral reconnects to its run, and a run
        # that already ended goes straight to execute_complete inside the provider's helper.
        self.run_id = self.submit_once_for(context).job_id
        if isinstance(self, DatabricksRunNowOperator) and not getattr(self, "_merged_json", None):
            self._merged_json = self._build_run_now_payload()
        self.before_defer(context)
        databricks_deferrable_execution()(self, self._hook, self.log, context)  # type: ignore[attr-defined]
        return None

    def before_defer(self, context: Any) -> None:
        """Called with the run id known, just before the provider's deferral helper (a test seam)."""


class ResumableDatabricksSubmitRunOperator(ResumableDatabricksMixin, DatabricksSubmitRunOperator):
    """``DatabricksSubmitRunOperator`` that submits exactly one run per task instance and generation."""

    def _databricks_submit(self, context: Any, token: str) -> int:
        payload = self._prepare_submit_json(context)
        payload["idempotency_token"] = token
        return self._hook.submit_run(payload)


class ResumableDatabricksRunNowOperator(ResumableDatabricksMixin, DatabricksRunNowOperator):
    """``DatabricksRunNowOperator`` that starts exactly one run per task instance and generation."""

    def _databricks_submit(self, context: Any, token: str) -> int:
        payload = self._prepare_run_now_json()
        payload["idempotency_token"] = token
        return self._hook.run_now(payload)
