"""One judgement per failed attempt: ``judge(ledger, ...) -> Judgement`` (pure, table-tested).

Every place that learns of a failed attempt — the failure gate on the API server (a worker's report), the
scheduler (a heartbeat timeout, an executor report), the task runner (an application failure, a drain) —
asks this one function and writes what it returns with one edge writer
(:func:`airflow_resilience.airflow.accounting.write`). So the rules live here only:

* a try is judged once: a second report of the same try replays the first verdict (``new`` is False);
* ``manual`` causes are recorded and left to Airflow (``stock``);
* otherwise :func:`airflow_resilience.budget.decide` over the current generation of the ledger: a
  **grant** raises ``max_tries`` by exactly one for this failure (``max_tries_after``) and retries at the
  infrastructure delay; **exhausted** fails the task instance now; **stock** leaves Airflow's own retry
  rules (the user's ``retries``) to decide.

Grants are made only where the failure is decided (the API server, the scheduler), one try at a time, so no
component's view of the DAG can hand an application failure a try beyond the user's ``retries``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from airflow_resilience.budget import BudgetPolicy, Verdict, decide
from airflow_resilience.causes import FailureCause, FailureKind
from airflow_resilience.ledger import ENDING_VERDICTS, AttemptRecord, Ledger


class Outcome(str, enum.Enum):
    """What happens to the task instance after the judgement."""

    RETRY = "retry"  #: a new try, granted: ``max_tries`` raised by one, at the infrastructure delay
    FAIL = "fail"  #: the infrastructure budget or the breaker says no: the task instance fails now
    STOCK = "stock"  #: Airflow's own rules decide (the user's ``retries``)


_OUTCOME = {"grant": Outcome.RETRY, "exhausted": Outcome.FAIL}


@dataclass(frozen=True)
class Judgement:
    try_number: int
    cause: FailureCause
    verdict: str
    outcome: Outcome
    #: One line for logs, ``retry_reason`` and the audit log.
    message: str
    max_tries: int
    max_tries_after: int
    #: Seconds before the granted try (``None`` unless ``outcome`` is RETRY).
    retry_delay: float | None
    #: The ledger with this try's record (the one to write when ``new``).
    ledger: Ledger
    #: False when this try had been judged already: nothing to write, the same outcome applies again.
    new: bool = True
    infra_left: int | None = None


def judge(
    ledger: Ledger,
    *,
    try_number: int,
    max_tries: int,
    cause: FailureCause,
    budget: BudgetPolicy,
    infra_retry_delay: float,
    at: str = "",
    clear_number: int | None = None,
    checkpoint: bool = False,
) -> Judgement:
    """Judge the failure of ``try_number`` (see the module docstring)."""
    earlier = ledger.record_for(try_number)
    if earlier is not None and earlier.verdict in ENDING_VERDICTS:
        outcome = _OUTCOME.get(earlier.verdict, Outcome.STOCK)
        after = earlier.after if earlier.after is not None else max_tries
        return Judgement(
            try_number, earlier.cause, earlier.verdict, outcome,
            f"{earlier.cause.kind.value}/{earlier.cause.reason.value}: judged before ({earlier.verdict})",
            max_tries, max(after, max_tries), infra_retry_delay if outcome is Outcome.RETRY else None,
            ledger, new=False,
        )
    if cause.kind is FailureKind.MANUAL:
        verdict, outcome, after, left, breaker = "manual", Outcome.STOCK, max_tries, None, False
        message = f"{cause.kind.value}/{cause.reason.value}: {cause.summary}; not retried by airflow-resilience"
    else:
        # This try's own pending record (the runner's word) is what is being judged, not history.
        history = Ledger(tuple(a for a in ledger.attempts if not (a.try_number == try_number and a.verdict == "pending")))
        decision = decide(history.since_clear(max_tries, clear_number), cause, budget)
        verdict = decision.verdict.value
        left = decision.infra_left
        breaker = decision.breaker
        message = decision.message
        if decision.verdict is Verdict.GRANT:
            outcome, after = Outcome.RETRY, max_tries + 1
        elif decision.verdict is Verdict.EXHAUSTED:
            outcome, after = Outcome.FAIL, max_tries
        else:
            outcome, after = Outcome.STOCK, max_tries
    record = AttemptRecord(
        try_number, cause, verdict, at=at, checkpoint=checkpoint,
        max_tries=max_tries, max_tries_after=after, clear_number=clear_number, breaker=breaker,
    )
    return Judgement(
        try_number, cause, verdict, outcome, message, max_tries, after,
        infra_retry_delay if outcome is Outcome.RETRY else None, ledger.append(record), new=True, infra_left=left,
    )


def pending(ledger: Ledger, *, try_number: int, cause: FailureCause, max_tries: int, at: str = "",
            clear_number: int | None = None, checkpoint: bool = False) -> Ledger:
    """The runner's word on its own end (a drain): the cause, for the server to judge when it is reported."""
    return ledger.append(
        AttemptRecord(try_number, cause, "pending", at=at, checkpoint=checkpoint, max_tries=max_tries,
                      clear_number=clear_number)
    )
