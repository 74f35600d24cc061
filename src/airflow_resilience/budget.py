"""The budget decision: ``decide(ledger, cause, policy) -> Decision`` (pure, table-tested).

``retries`` stays exactly the application budget, as in stock Airflow. Infrastructure causes are paid
from ``infra_retries``, a separate, bounded budget that works for ``retries=0`` tasks too. A circuit
breaker stops granting when the same infrastructure reason comes back ``breaker_threshold`` times in a
row (a node pool that keeps getting reclaimed is not going to get better by retrying). ``timeout`` and
``manual`` causes never get a grant; application and unknown causes follow stock Airflow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from airflow_resilience.causes import FailureCause, FailureKind
from airflow_resilience.errors import ConfigurationError
from airflow_resilience.ledger import Ledger


#: Largest ``infra_retries`` / ``breaker_threshold``: a budget is counted within the ledger's newest records.
BUDGET_MAX = 24


@dataclass(frozen=True)
class BudgetPolicy:
    """The infrastructure budget of a task instance."""

    #: Attempts that infrastructure failures may add, per task instance (0: stock Airflow rules).
    infra_retries: int = 3
    #: The same infrastructure reason this many times in a row opens the breaker (that failure is not granted).
    breaker_threshold: int = 3

    def __post_init__(self) -> None:
        for name, minimum in (("infra_retries", 0), ("breaker_threshold", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= BUDGET_MAX:
                raise ConfigurationError(
                    f"{name} must be an integer from {minimum} to {BUDGET_MAX}, got {value!r} "
                    f"(set it in InfraRetryPolicy({name}=...) or [resilience] {name})"
                )


class Verdict(str, enum.Enum):
    """What the budget says about one failed attempt."""

    GRANT = "grant"  #: infrastructure: a new attempt, paid from infra_retries; retries untouched
    STOCK = "stock"  #: not ours to pay: stock Airflow decides (application retries, or failure)
    EXHAUSTED = "exhausted"  #: infrastructure, but the budget or the breaker says no: the task fails


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    cause: FailureCause
    #: Infrastructure grants used, including this one when granted.
    infra_used: int
    infra_left: int
    #: One line for logs and ``retry_reason``.
    message: str
    #: The circuit breaker said no (the same infrastructure reason ``breaker_threshold`` times in a row).
    breaker: bool = False


def decide(ledger: Ledger, cause: FailureCause, policy: BudgetPolicy) -> Decision:
    used = ledger.infra_grants
    left = max(policy.infra_retries - used, 0)
    label = f"{cause.kind.value}/{cause.reason.value}"
    if cause.kind is not FailureKind.INFRASTRUCTURE:
        return Decision(Verdict.STOCK, cause, used, left, f"{label}: {cause.summary}; stock retry rules apply")
    if policy.infra_retries == 0:
        return Decision(
            Verdict.STOCK, cause, used, 0, f"{label}: {cause.summary}; infra_retries=0: stock retry rules apply"
        )
    in_a_row = ledger.trailing_same_reason(cause.reason) + 1
    if in_a_row >= policy.breaker_threshold:
        return Decision(
            Verdict.EXHAUSTED,
            cause,
            used,
            left,
            f"{label}: {cause.summary}; circuit breaker open: {cause.reason.value} {in_a_row} times in a row "
            f"(breaker_threshold={policy.breaker_threshold}), no infrastructure retry granted",
            breaker=True,
        )
    if left <= 0:
        return Decision(
            Verdict.EXHAUSTED,
            cause,
            used,
            0,
            f"{label}: {cause.summary}; infrastructure budget exhausted: {used} of "
            f"infra_retries={policy.infra_retries} used",
        )
    return Decision(
        Verdict.GRANT,
        cause,
        used + 1,
        left - 1,
        f"{label}: {cause.summary}; infrastructure retry {used + 1} of {policy.infra_retries} granted, "
        "retries untouched",
    )
