"""``InfraRetryPolicy``: Airflow's ``retry_policy=`` (AIP-105), evaluated in the worker for every exception.

It decides nothing that could add a try: ``retries`` and ``max_tries`` keep their stock meaning on every
component. What it does:

* for an application failure or a timeout, it records the verdict ``stock`` for this try in the ledger
  (the failure gate on the API server then knows the runner reported its own failure, and leaves it to
  Airflow), consults the user's own policy (``then=``; it can fail early or set a delay) and otherwise
  lets Airflow's retry rules decide, with a reason that says which application retry this is;
* for a drain (:class:`~airflow_resilience.airflow.execution.InfrastructureInterruption`) it lets the
  failure be reported as usual: the drain recorded its cause as ``pending`` and the gate judges it;
* it carries the task's infrastructure budget (``infra_retries``, ``breaker_threshold``), which the
  attempt records at its start for the gate and the scheduler.

It never raises (Airflow would fall back to its defaults anyway); an error in its bookkeeping is one
warning and the metric ``resilience.bookkeeping_errors``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pure core is imported when a failure is handled, not when a DAG is parsed
    from airflow_resilience.budget import BudgetPolicy

log = logging.getLogger(__name__)


def _is_timeout(exc: BaseException) -> bool:
    from airflow.sdk.exceptions import AirflowTaskTimeout

    return isinstance(exc, AirflowTaskTimeout)


class InfraRetryPolicy(RetryPolicy):
    """Pay infrastructure failures from ``infra_retries``; keep ``retries`` for the application.

    :param infra_retries: attempts infrastructure failures may add (default ``[resilience] infra_retries``).
    :param breaker_threshold: same infrastructure reason this many times in a row stops granting
        (default ``[resilience] breaker_threshold``).
    :param then: the user's own retry policy, consulted for application failures.
    """

    def __init__(
        self,
        infra_retries: int | None = None,
        *,
        breaker_threshold: int | None = None,
        then: RetryPolicy | None = None,
    ) -> None:
        if infra_retries is not None or breaker_threshold is not None:
            # Validate eagerly (a bad value is a DAG parse error naming the argument).
            from airflow_resilience.budget import BudgetPolicy

            BudgetPolicy(
                infra_retries=3 if infra_retries is None else infra_retries,
                breaker_threshold=3 if breaker_threshold is None else breaker_threshold,
            )
        self.infra_retries = infra_retries
        self.breaker_threshold = breaker_threshold
        self.then = then
        #: The user's ``retries`` (the application budget), bound by the task policy.
        self.app_retries: int | None = None

    def budget(self, defaults: BudgetPolicy | None = None) -> BudgetPolicy:
        from airflow_resilience.budget import BudgetPolicy

        defaults = defaults or BudgetPolicy()
        return BudgetPolicy(
            infra_retries=defaults.infra_retries if self.infra_retries is None else self.infra_retries,
            breaker_threshold=defaults.breaker_threshold if self.breaker_threshold is None else self.breaker_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"InfraRetryPolicy(infra_retries={self.infra_retries}, breaker_threshold={self.breaker_threshold}, "
            f"then={self.then!r}, app_retries={self.app_retries})"
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "infra_retries": self.infra_retries,
            "breaker_threshold": self.breaker_threshold,
            "app_retries": self.app_retries,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> InfraRetryPolicy:
        policy = cls(data.get("infra_retries"), breaker_threshold=data.get("breaker_threshold"))
        policy.app_retries = data.get("app_retries")
        return policy

    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        try:
            return self._evaluate(exception, try_number, max_tries, context)
        except Exception:  # never raise: Airflow's own rules decide
            log.exception("airflow-resilience: retry policy failed; Airflow's retry rules decide")
            return RetryDecision.default()

    def _evaluate(self, exception, try_number, max_tries, context) -> RetryDecision:
        from airflow_resilience.airflow.execution import InfrastructureInterruption

        if isinstance(exception, InfrastructureInterruption):
            # Recorded as pending by the drain; judged by the failure gate when the failure is reported.
            return RetryDecision.default()
        from airflow_resilience.causes import Evidence, classify

        app_retries = self.app_retries or 0
        cause = classify(Evidence(exception=type(exception).__name__, execution_timeout=_is_timeout(exception)))
        used = self._record(cause, try_number, max_tries, context)
        label = f"{cause.kind.value}/{cause.reason.value}"
        user = self.then.evaluate(exception, try_number, max_tries, context) if self.then else None
        if user is not None and user.action == RetryAction.FAIL:
            return user
        if used is not None and used > app_retries:
            log.info("airflow-resilience: %s: application retries exhausted: %d of retries=%d used",
                     label, used - 1, app_retries)
            reason = f"{label}: application retries exhausted: {used - 1} of retries={app_retries} used"
        elif used is not None:
            reason = f"{label}: application retry {used} of retries={app_retries}"
        else:
            reason = f"{label}: application failure"
        return RetryDecision.retry(
            delay=user.retry_delay if user is not None and user.retry_delay else None,
            reason=(user.reason if user is not None and user.reason else None) or reason,
        )

    def _record(self, cause, try_number, max_tries, context) -> int | None:
        """Mark this try as reported by its runner and record the ``stock`` verdict; the application
        failures of this generation so far (this one included), or None when the ledger is unavailable."""
        from airflow_resilience.airflow import accounting
        from airflow_resilience.airflow.execution import (
            attempt_had_checkpoint,
            bookkeeping_store,
            budget_for,
            clear_number_of,
            mark_attempt_ended,
        )
        from airflow_resilience.airflow.runtime import settings
        from airflow_resilience.causes import FailureKind
        from airflow_resilience.judge import judge
        from airflow_resilience.ledger import LEDGER_KEY, Ledger

        if not context:
            return None
        try:
            store = bookkeeping_store(context["ti"])
            mark_attempt_ended(context["ti"], "failed")  # first: the failure gate reads this
            ledger = Ledger.from_json(store.get(LEDGER_KEY))
            clear_number = clear_number_of(context)
            judgement = judge(
                ledger, try_number=try_number, max_tries=max_tries, cause=cause, budget=budget_for(self),
                infra_retry_delay=settings().infra_retry_delay, at=datetime.now(timezone.utc).isoformat(),
                clear_number=clear_number, checkpoint=attempt_had_checkpoint(store, try_number),
            )
            accounting.write(judgement, store.set)
        except Exception as exc:
            accounting.bookkeeping_failed("retry policy record", exc)
            return None
        generation = judgement.ledger.since_clear(max_tries, clear_number)
        return sum(1 for a in generation.attempts if a.cause.kind in (FailureKind.APPLICATION, FailureKind.TIMEOUT))
