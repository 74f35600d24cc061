"""The one edge writer of failure accounting, and the guard around the package's own bookkeeping.

:func:`airflow_resilience.judge.judge` decides; :func:`write` stores what it decided (the ledger, with the
bookkeeping retention) and emits the metrics, wherever the failure was seen (API server, scheduler, task
runner). :func:`bookkeeping_failed` is how an error in our own records ends: one warning line, the metric
``resilience.bookkeeping_errors``, and stock Airflow behaviour for the task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a failure is judged, not at every task start
    from airflow_resilience.budget import BudgetPolicy
    from airflow_resilience.causes import FailureCause
    from airflow_resilience.judge import Judgement

log = logging.getLogger(__name__)

ATTEMPT_KEY = "resilience:attempt"
EVIDENCE_KEY = "resilience:evidence"
#: Same values as :mod:`airflow_resilience.ledger` (kept here so a task start imports no pure core).
LEDGER_KEY = "resilience:ledger"
ENDING_VERDICTS = frozenset({"grant", "stock", "exhausted", "manual"})


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def metric(name: str, cause: FailureCause | None = None, **tags: str) -> None:
    """``resilience.<name>`` counter, with ``kind``/``reason`` tags for a cause (tagged and dotted forms,
    :mod:`airflow_resilience.airflow.metrics`). Never raises."""
    try:
        from airflow_resilience.airflow import metrics

        labels = dict(tags)
        if cause is not None:
            labels = {"kind": cause.kind.value, "reason": cause.reason.value, **labels}
        metrics.incr(f"resilience.{name}", **labels)
    except Exception:  # metrics must never change a task's outcome
        log.debug("metric resilience.%s not emitted", name, exc_info=True)


def bookkeeping_failed(what: str, exc: BaseException | None = None) -> None:
    """Our own records could not be read or written: warn once per call site, count, act as stock."""
    log.warning(
        "airflow-resilience: %s failed (%s): this attempt runs with stock Airflow behaviour",
        what, f"{type(exc).__name__}: {exc}" if exc is not None else "no detail",
    )
    metric("bookkeeping_errors", where=what.split(" ")[0])


def write(judgement: Judgement, put: Callable[[str, Any], None]) -> None:
    """Store ``judgement`` through ``put(key, value)`` (when it is new) and count it."""
    if not judgement.new:
        return
    put(LEDGER_KEY, judgement.ledger.to_json())
    metric("failures", judgement.cause)
    metric("decisions", judgement.cause, verdict=judgement.verdict)


def budget_of(attempt: Any, try_number: int, defaults: BudgetPolicy) -> BudgetPolicy:
    """The budget the attempt recorded at its start (its task's ``InfraRetryPolicy``), else ``defaults``."""
    from airflow_resilience.budget import BudgetPolicy

    raw = attempt.get("budget") if isinstance(attempt, dict) and attempt.get("try_number") == try_number else None
    if isinstance(raw, dict):
        try:
            return BudgetPolicy(
                infra_retries=raw.get("infra_retries", defaults.infra_retries),
                breaker_threshold=raw.get("breaker_threshold", defaults.breaker_threshold),
            )
        except Exception:
            return defaults
    return defaults
