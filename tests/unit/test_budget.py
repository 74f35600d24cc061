"""decide(ledger, cause, policy) as a table, from a ledger builder (like tenacity's make_retry_state)."""

from __future__ import annotations

import pytest

from airflow_resilience.budget import BudgetPolicy, Verdict, decide
from airflow_resilience.causes import FailureCause, FailureKind, Reason
from airflow_resilience.errors import ConfigurationError, CorruptCheckpointError
from airflow_resilience.ledger import AttemptRecord, Ledger

KIND = {
    "app": (FailureKind.APPLICATION, Reason.APP_EXCEPTION),
    "kill": (FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGKILL),
    "lost": (FailureKind.INFRASTRUCTURE, Reason.WORKER_LOST),
    "evict": (FailureKind.INFRASTRUCTURE, Reason.K8S_EVICTION),
    "timeout": (FailureKind.TIMEOUT, Reason.EXECUTION_TIMEOUT),
    "manual": (FailureKind.MANUAL, Reason.USER_MARKED),
    "unknown": (FailureKind.UNKNOWN, Reason.UNKNOWN),
}


def cause(name: str) -> FailureCause:
    kind, reason = KIND[name]
    return FailureCause(kind, reason, name)


def make_ledger(*history: str) -> Ledger:
    """Ledger from names; infrastructure entries were granted, others followed stock rules."""
    ledger = Ledger()
    for i, name in enumerate(history, start=1):
        c = cause(name)
        verdict = "grant" if c.kind is FailureKind.INFRASTRUCTURE else "stock"
        ledger = ledger.append(AttemptRecord(try_number=i, cause=c, verdict=verdict))
    return ledger


@pytest.mark.parametrize(
    ("history", "now", "policy", "verdict", "used", "left"),
    [
        ((), "app", BudgetPolicy(), Verdict.STOCK, 0, 3),
        ((), "timeout", BudgetPolicy(), Verdict.STOCK, 0, 3),
        ((), "manual", BudgetPolicy(), Verdict.STOCK, 0, 3),
        ((), "unknown", BudgetPolicy(), Verdict.STOCK, 0, 3),
        ((), "kill", BudgetPolicy(), Verdict.GRANT, 1, 2),
        (("kill",), "lost", BudgetPolicy(), Verdict.GRANT, 2, 1),
        (("kill", "lost"), "evict", BudgetPolicy(), Verdict.GRANT, 3, 0),
        (("kill", "lost", "evict"), "kill", BudgetPolicy(), Verdict.EXHAUSTED, 3, 0),
        ((), "kill", BudgetPolicy(infra_retries=0), Verdict.STOCK, 0, 0),
        # the breaker: the same reason three times in a row
        (("kill", "kill"), "kill", BudgetPolicy(infra_retries=10), Verdict.EXHAUSTED, 2, 8),
        (("kill", "app", "kill"), "kill", BudgetPolicy(infra_retries=10), Verdict.GRANT, 3, 7),
        (("kill", "lost"), "kill", BudgetPolicy(infra_retries=10), Verdict.GRANT, 3, 7),
        (("lost",), "lost", BudgetPolicy(infra_retries=10, breaker_threshold=2), Verdict.EXHAUSTED, 1, 9),
        (("lost",), "lost", BudgetPolicy(infra_retries=10, breaker_threshold=1), Verdict.EXHAUSTED, 1, 9),
        # application failures in between never use the infra budget
        (("app", "app"), "kill", BudgetPolicy(infra_retries=1), Verdict.GRANT, 1, 0),
        (("kill", "app"), "app", BudgetPolicy(infra_retries=1), Verdict.STOCK, 1, 0),
    ],
)
def test_decide(history, now, policy, verdict, used, left) -> None:
    decision = decide(make_ledger(*history), cause(now), policy)
    assert (decision.verdict, decision.infra_used, decision.infra_left) == (verdict, used, left)


def test_messages_name_the_budget() -> None:
    exhausted = decide(make_ledger("kill", "lost", "evict"), cause("kill"), BudgetPolicy())
    assert "infrastructure budget exhausted: 3 of infra_retries=3 used" in exhausted.message
    breaker = decide(make_ledger("kill", "kill"), cause("kill"), BudgetPolicy(infra_retries=9))
    assert "circuit breaker open: signal.sigkill 3 times in a row (breaker_threshold=3)" in breaker.message
    granted = decide(Ledger(), cause("lost"), BudgetPolicy())
    assert "infrastructure retry 1 of 3 granted, retries untouched" in granted.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"infra_retries": -1}, r"infra_retries must be an integer from 0 to 24, got -1"),
        ({"infra_retries": "3"}, r"infra_retries must be an integer from 0 to 24, got '3'"),
        ({"breaker_threshold": 0}, r"breaker_threshold must be an integer from 1 to 24, got 0"),
        ({"infra_retries": True}, r"infra_retries must be an integer"),
    ],
)
def test_bad_policy(kwargs, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BudgetPolicy(**kwargs)


def test_ledger_round_trip_and_corruption() -> None:
    ledger = make_ledger("kill", "app")
    assert Ledger.from_json(ledger.to_json()) == ledger
    assert Ledger.from_json(None) == Ledger()
    with pytest.raises(CorruptCheckpointError, match="resilience:ledger"):
        Ledger.from_json({"format": 1, "attempts": [{"try_number": 1}]})
