"""``InfraRetryPolicy``: Airflow's ``retry_policy=`` (AIP-105) that keeps ``retries`` the application budget.

The task policy of this package gives every task ``infra_retries + 1`` extra tries (so that Airflow's own
machinery — the supervisor's ``should_retry``, the scheduler's heartbeat-timeout handling — starts a new
attempt after an infrastructure failure even for ``retries=0``). This policy, evaluated by the Task SDK
in the worker for every *exception*, takes the extra tries back from application failures: it counts the
application and timeout failures in the ledger and fails the task once they exceed the user's
``retries``, exactly as stock Airflow would. A user's own policy passed as ``then=`` is consulted for
application failures (it can fail early or set a delay, never add tries).

It never raises: Airflow ignores a raising policy, which here would hand out the extra tries. On an
internal error it decides from ``try_number`` alone, conservatively.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy

from airflow_resilience.budget import BudgetPolicy
from airflow_resilience.causes import Evidence, FailureKind, classify
from airflow_resilience.ledger import LEDGER_KEY, AttemptRecord, Ledger

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
        # Validate eagerly (a bad value is a DAG parse error naming the argument).
        BudgetPolicy(
            infra_retries=3 if infra_retries is None else infra_retries,
            breaker_threshold=3 if breaker_threshold is None else breaker_threshold,
        )
        self.infra_retries = infra_retries
        self.breaker_threshold = breaker_threshold
        self.then = then
        #: The user's ``retries`` (the application budget), bound by the task policy.
        self.app_retries: int | None = None
        #: The user's ``retry_delay``, given back to application retries (the task's own is the infra delay).
        self.app_retry_delay: Any = None

    def budget(self, defaults: BudgetPolicy | None = None) -> BudgetPolicy:
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
        except Exception:  # never raise: Airflow would ignore us and hand out the infra tries
            log.exception("airflow-resilience: retry policy failed; deciding from try_number alone")
            app = self.app_retries or 0
            if try_number > app:
                return RetryDecision.fail(reason="application retries exhausted (ledger unavailable)")
            return RetryDecision.retry(reason="application failure (ledger unavailable)")

    def _evaluate(self, exception, try_number, max_tries, context) -> RetryDecision:
        from airflow_resilience.airflow.execution import (
            InfrastructureInterruption,
            attempt_had_checkpoint,
            metric,
            runner_store,
        )

        if isinstance(exception, InfrastructureInterruption):
            return self._infrastructure(exception, try_number, context)
        app_retries = self.app_retries or 0
        evidence = Evidence(exception=type(exception).__name__, execution_timeout=_is_timeout(exception))
        cause = classify(evidence)
        store = runner_store(context["ti"]) if context else None
        ledger = Ledger.from_json(store.get(LEDGER_KEY)) if store else Ledger()
        generation = ledger.since_clear(max_tries)
        used = sum(1 for a in generation.attempts if a.cause.kind in (FailureKind.APPLICATION, FailureKind.TIMEOUT)) + 1
        if used > app_retries:
            decision = RetryDecision.fail(
                reason=f"{cause.kind.value}/{cause.reason.value}: application retries exhausted: "
                f"{used - 1} of retries={app_retries} used"
            )
        else:
            user = self.then.evaluate(exception, try_number, max_tries, context) if self.then else None
            if user is not None and user.action == RetryAction.FAIL:
                decision = user
            else:
                decision = RetryDecision.retry(
                    delay=(user.retry_delay if user and user.retry_delay else None) or self.app_retry_delay,
                    reason=(user.reason if user and user.reason else None)
                    or f"{cause.kind.value}/{cause.reason.value}: application retry {used} of retries={app_retries}",
                )
        if store is not None:
            record = AttemptRecord(
                try_number=try_number,
                cause=cause,
                verdict="stock",
                at=datetime.now(timezone.utc).isoformat(),
                checkpoint=attempt_had_checkpoint(store, try_number),
                max_tries=max_tries,
            )
            store.set(LEDGER_KEY, ledger.append(record).to_json())
        metric("failures", cause)
        return decision

    def _infrastructure(self, exc, try_number, context) -> RetryDecision:
        """A drained attempt: the budget decides; a grant retries at the infrastructure delay."""
        from airflow_resilience.airflow.execution import attempt_had_checkpoint, budget_for, metric, runner_store
        from airflow_resilience.airflow.runtime import settings
        from airflow_resilience.budget import Verdict, decide

        ti = context["ti"]
        store = runner_store(ti)
        ledger = Ledger.from_json(store.get(LEDGER_KEY))
        max_tries = int(getattr(ti, "max_tries", 0) or 0)
        decision = decide(ledger.since_clear(max_tries), exc.cause, budget_for(self))
        record = AttemptRecord(
            try_number=try_number,
            cause=exc.cause,
            verdict=decision.verdict.value,
            at=datetime.now(timezone.utc).isoformat(),
            checkpoint=attempt_had_checkpoint(store, try_number),
            max_tries=max_tries,
        )
        store.set(LEDGER_KEY, ledger.append(record).to_json())
        metric("failures", exc.cause)
        metric("decisions", exc.cause, verdict=decision.verdict.value)
        if decision.verdict is Verdict.GRANT:
            from datetime import timedelta

            return RetryDecision.retry(delay=timedelta(seconds=settings().infra_retry_delay), reason=decision.message)
        if decision.verdict is Verdict.STOCK:  # infra_retries=0: stock Airflow decides
            return RetryDecision.default()
        return RetryDecision.fail(reason=decision.message)
