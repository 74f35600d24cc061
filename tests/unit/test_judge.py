"""judge(ledger, ...) -> Judgement as a table: one judgement per failed try, wherever it was seen.

Each history is a run of tries of one task instance as the server saw them: the failure's cause name and
the ``max_tries`` it was judged at. A grant raises ``max_tries`` by one; nothing else of ours moves it.
"""

from __future__ import annotations

import pytest

from airflow_resilience.budget import BudgetPolicy
from airflow_resilience.causes import FailureCause, FailureKind, Reason
from airflow_resilience.judge import Outcome, judge, pending
from airflow_resilience.ledger import LEDGER_LIMIT, SUMMARY_LIMIT, AttemptRecord, Ledger

KIND = {
    "app": (FailureKind.APPLICATION, Reason.APP_EXCEPTION),
    "kill": (FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGKILL),
    "lost": (FailureKind.INFRASTRUCTURE, Reason.WORKER_LOST),
    "term": (FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGTERM),
    "timeout": (FailureKind.TIMEOUT, Reason.EXECUTION_TIMEOUT),
    "manual": (FailureKind.MANUAL, Reason.USER_MARKED),
    "unknown": (FailureKind.UNKNOWN, Reason.UNKNOWN),
}


def cause(name: str) -> FailureCause:
    kind, reason = KIND[name]
    return FailureCause(kind, reason, name)


def run(history: list[str], *, retries: int, budget: BudgetPolicy, clear_number: int = 0):
    """Judge each try in turn, as the server would: returns the judgements and the final max_tries."""
    ledger, max_tries, out = Ledger(), retries, []
    for try_number, name in enumerate(history, start=1):
        j = judge(ledger, try_number=try_number, max_tries=max_tries, cause=cause(name), budget=budget,
                  infra_retry_delay=2.0, clear_number=clear_number)
        out.append(j)
        ledger, max_tries = j.ledger, j.max_tries_after
    return out, max_tries


def stock_airflow_goes_on(try_number: int, max_tries: int) -> bool:
    """Airflow's own rule (``_is_eligible_to_retry``): a further try after ``try_number``."""
    return max_tries != 0 and try_number <= max_tries


@pytest.mark.parametrize(
    ("history", "retries", "budget", "outcomes", "max_tries"),
    [
        # retries=0, one kill: granted; the granted try raises max_tries 0 -> 1
        (["kill"], 0, BudgetPolicy(), ["retry"], 1),
        # application failures are Airflow's: max_tries never moves
        (["app", "app"], 1, BudgetPolicy(), ["stock", "stock"], 1),
        # retries=1: app, kill, app -> the user's one retry is kept across the kill
        (["app", "kill", "app"], 1, BudgetPolicy(), ["stock", "retry", "stock"], 2),
        # infra_retries=0: stock rules (the kill spends a retry)
        (["kill"], 2, BudgetPolicy(infra_retries=0), ["stock"], 2),
        # budget of 2: the third infrastructure loss fails the task instance
        (["kill", "lost", "kill"], 0, BudgetPolicy(infra_retries=2, breaker_threshold=5), ["retry", "retry", "fail"], 2),
        # breaker: the same reason twice in a row with threshold 2
        (["kill", "kill"], 0, BudgetPolicy(infra_retries=5, breaker_threshold=2), ["retry", "fail"], 1),
        # a different reason in between resets the run
        (["kill", "lost", "kill"], 0, BudgetPolicy(infra_retries=5, breaker_threshold=2), ["retry", "retry", "retry"], 3),
        # timeouts and manual stops never get a grant
        (["timeout"], 0, BudgetPolicy(), ["stock"], 0),
        (["manual"], 0, BudgetPolicy(), ["stock"], 0),
        (["unknown"], 0, BudgetPolicy(), ["stock"], 0),
    ],
)
def test_judgements(history, retries, budget, outcomes, max_tries) -> None:
    judgements, final = run(history, retries=retries, budget=budget)
    assert [j.outcome.value for j in judgements] == outcomes
    assert final == max_tries


@pytest.mark.parametrize(
    "history",
    [["app"] * 4, ["kill", "app", "app", "app"], ["app", "kill", "lost", "app", "app"], ["kill", "kill", "kill", "kill"]],
)
@pytest.mark.parametrize("retries", [0, 1, 2])
def test_application_failures_never_get_a_try_beyond_retries(history, retries) -> None:
    """Whatever the mix, the tries Airflow grants application failures are exactly ``retries``."""
    judgements, _ = run(history, retries=retries, budget=BudgetPolicy(infra_retries=3, breaker_threshold=9))
    app_failures_retried = 0
    for j in judgements:
        if j.cause.kind is FailureKind.APPLICATION and stock_airflow_goes_on(j.try_number, j.max_tries_after):
            app_failures_retried += 1
        if j.cause.kind is FailureKind.APPLICATION and not stock_airflow_goes_on(j.try_number, j.max_tries_after):
            break
    assert app_failures_retried <= retries


def test_same_try_twice_replays_the_first_verdict() -> None:
    first = judge(Ledger(), try_number=1, max_tries=0, cause=cause("kill"), budget=BudgetPolicy(), infra_retry_delay=2)
    again = judge(first.ledger, try_number=1, max_tries=1, cause=cause("app"), budget=BudgetPolicy(), infra_retry_delay=2)
    assert (first.new, again.new) == (True, False)
    assert again.outcome is Outcome.RETRY and again.verdict == "grant" and again.max_tries_after == 1
    assert again.ledger is first.ledger  # nothing new to write


def test_pending_record_is_judged_not_counted() -> None:
    """A drain's pending record is the cause being judged, not a previous failure of the same reason."""
    ledger = pending(Ledger(), try_number=1, cause=cause("term"), max_tries=0)
    j = judge(ledger, try_number=1, max_tries=0, cause=cause("term"),
              budget=BudgetPolicy(infra_retries=3, breaker_threshold=1 + 1), infra_retry_delay=2)
    assert j.outcome is Outcome.RETRY
    assert [(a.try_number, a.verdict) for a in j.ledger.attempts] == [(1, "grant")]


def test_a_clear_starts_a_new_generation() -> None:
    """Two grants, then the user clears (max_tries = try_number + retries, clear_number moves): the budget
    starts over. A clear of another task of the run (only clear_number moves) does not reset it."""
    budget = BudgetPolicy(infra_retries=2, breaker_threshold=9)
    judgements, max_tries = run(["kill", "lost"], retries=0, budget=budget, clear_number=0)
    ledger = judgements[-1].ledger
    # try 3 ran and succeeded, then a clear: max_tries = 3 + 0 = 3, clear_number 1
    after_clear = judge(ledger, try_number=4, max_tries=3, cause=cause("kill"), budget=budget,
                        infra_retry_delay=2, clear_number=1)
    assert after_clear.outcome is Outcome.RETRY and after_clear.infra_left == 1
    # no clear of this task instance (max_tries still 2), only of another task in the run
    other = judge(ledger, try_number=3, max_tries=max_tries, cause=cause("kill"), budget=budget,
                  infra_retry_delay=2, clear_number=1)
    assert other.outcome is Outcome.FAIL


def test_ledger_is_bounded() -> None:
    ledger = Ledger()
    for i in range(1, 200):
        long = FailureCause(FailureKind.APPLICATION, Reason.APP_EXCEPTION, "x" * 5000)
        ledger = ledger.append(AttemptRecord(i, long, "stock", max_tries=300, max_tries_after=300))
    assert len(ledger.attempts) == LEDGER_LIMIT
    assert ledger.attempts[-1].try_number == 199
    assert all(len(a.cause.summary) <= SUMMARY_LIMIT for a in ledger.attempts)
    import json

    assert len(json.dumps(ledger.to_json())) < 20_000  # far below the state store's 64 KB value limit


def test_legacy_records_read() -> None:
    raw = {"format": 1, "attempts": [{"try_number": 1, "cause": {"kind": "infrastructure", "reason": "worker.lost",
                                                                  "summary": "s"}, "verdict": "grant", "max_tries": 6}]}
    ledger = Ledger.from_json(raw)
    assert ledger.attempts[0].max_tries_after is None and ledger.attempts[0].after == 6
    # Written under the old parse-time budget (max_tries 6): another generation for max_tries 0.
    assert ledger.since_clear(0, 0).attempts == ()
