"""The fleet numbers and a task instance's budget lines (airflow_resilience.report) as tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_resilience.budget import BudgetPolicy, decide
from airflow_resilience.causes import FailureCause, FailureKind, Reason
from airflow_resilience.judge import judge
from airflow_resilience.ledger import AttemptRecord, Ledger
from airflow_resilience.report import FailedAttempt, budgets, format_seconds, parse_window, summarize

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def failed(try_number=1, kind="infrastructure", reason="signal.sigkill", verdict="grant", **kw) -> FailedAttempt:
    base = dict(dag_id="etl", task_id="load", run_id="r1", map_index=-1, at=at(100))
    base.update(kw)
    return FailedAttempt(try_number=try_number, kind=kind, reason=reason, verdict=verdict, **base)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)),
     ("15m", timedelta(minutes=15)), ("2w", timedelta(weeks=2)), (" 7d ", timedelta(days=7))],
)
def test_parse_window(text, expected):
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["7", "d7", "7 days", "", "-1d", "0h", "400d", "1y"])
def test_parse_window_refuses_with_the_fix(text):
    with pytest.raises(ValueError, match="since="):
        parse_window(text)


@pytest.mark.parametrize(
    ("attempt", "redone", "saved"),
    [
        # resumed from a checkpoint written 80 s into a 100 s try: 80 s saved, 20 s redone
        (failed(started_at=at(0), ended_at=at(100), checkpoint_written_at=at(80), resumed=True), 20.0, 80.0),
        # the checkpoint opened 10 s after the try started (runner start-up): that is not saved work
        (failed(started_at=at(0), ended_at=at(100), checkpoint_opened_at=at(10), checkpoint_written_at=at(80),
                resumed=True), 30.0, 70.0),
        # an opening after the last write is not trusted
        (failed(started_at=at(0), ended_at=at(100), checkpoint_opened_at=at(90), checkpoint_written_at=at(80),
                resumed=True), 100.0, 0.0),
        # it wrote a checkpoint but no later try resumed from it (e.g. the budget said no): all redone
        (failed(started_at=at(0), ended_at=at(100), checkpoint_written_at=at(80), resumed=False), 100.0, 0.0),
        # no checkpoint at all
        (failed(started_at=at(0), ended_at=at(100)), 100.0, 0.0),
        # a write time outside the try (clock skew, damaged entry) is not trusted
        (failed(started_at=at(0), ended_at=at(100), checkpoint_written_at=at(150), resumed=True), 100.0, 0.0),
        # unknown times: counted as 0 in both, never guessed
        (failed(started_at=None, ended_at=at(100), checkpoint_written_at=at(80), resumed=True), 0.0, 0.0),
        (failed(started_at=at(0), ended_at=None), 0.0, 0.0),
        (failed(started_at=at(100), ended_at=at(0)), 0.0, 0.0),
    ],
)
def test_seconds_redone_and_saved(attempt, redone, saved):
    assert attempt.seconds == (redone, saved)


def test_summarize_counts_kinds_verdicts_breakers_and_tops():
    attempts = [
        failed(1, started_at=at(0), ended_at=at(100), checkpoint_written_at=at(90), resumed=True, hostname="w1", pool="p"),
        failed(2, reason="k8s.eviction", started_at=at(200), ended_at=at(260), hostname="w2", pool="p"),
        failed(3, reason="k8s.eviction", verdict="exhausted", breaker=True, hostname="w2", pool="p"),
        failed(1, kind="application", reason="app.exception", verdict="stock", task_id="other", hostname="w1"),
        failed(1, kind="timeout", reason="timeout.execution", verdict="stock", dag_id="other_dag", run_id="r9"),
        failed(4, verdict="pending"),  # not judged yet: left out
        failed(1, at=at(-10_000)),  # before the window: left out
    ]
    out = summarize(attempts, since=at(0), until=at(1000), window="1h")
    t = out["totals"]
    assert t["failed_attempts"] == 5
    assert (t["infrastructure"], t["application"], t["timeout"], t["manual"], t["unknown"]) == (3, 1, 1, 0, 0)
    assert (t["grants"], t["stock"], t["exhausted"], t["breakers_opened"], t["retries_kept"]) == (2, 2, 1, 1, 2)
    assert t["redone_seconds"] == 10.0 + 60.0
    assert t["saved_seconds"] == 90.0
    assert out["by_reason"][0] == {"kind": "infrastructure", "reason": "k8s.eviction", "count": 2}
    assert {"verdict": "exhausted", "count": 1} in out["by_verdict"]
    assert out["top"]["dags"][0] == {"name": "etl", "count": 4}
    assert out["top"]["tasks"][0] == {"name": "etl.load", "count": 3}
    assert out["top"]["hosts"] == [{"name": "w1", "count": 2}, {"name": "w2", "count": 2}]
    assert out["top"]["pools"] == [{"name": "p", "count": 3}]
    assert out["by_day"] == [{"day": "2026-12-01", "infrastructure": 3, "application": 1, "timeout": 1, "manual": 0, "unknown": 0}]


def test_summarize_filters_one_dag_and_an_empty_window():
    attempts = [failed(1), failed(1, dag_id="other_dag")]
    assert summarize(attempts, since=at(0), until=at(1000), dag_id="other_dag")["totals"]["failed_attempts"] == 1
    empty = summarize([], since=at(0), until=at(1000))
    assert empty["totals"]["failed_attempts"] == 0 and empty["by_reason"] == [] and empty["by_day"] == []


KILL = FailureCause(FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGKILL, "killed")
APP = FailureCause(FailureKind.APPLICATION, Reason.APP_EXCEPTION, "bug")


def rec(try_number, cause, verdict, breaker=False):
    return AttemptRecord(try_number=try_number, cause=cause, verdict=verdict, breaker=breaker)


@pytest.mark.parametrize(
    ("records", "retries", "infra", "user", "breaker"),
    [
        ([], 2, {"limit": 3, "used": 0, "left": 3}, {"limit": 2, "used": 0, "left": 2}, (0, False)),
        ([rec(1, KILL, "grant")], 1, {"limit": 3, "used": 1, "left": 2}, {"limit": 1, "used": 0, "left": 1}, (1, False)),
        ([rec(1, APP, "stock"), rec(2, KILL, "grant")], 1,
         {"limit": 3, "used": 1, "left": 2}, {"limit": 1, "used": 1, "left": 0}, (1, False)),
        # the last stock failure of a task with no retries left spent nothing more
        ([rec(1, APP, "stock"), rec(2, APP, "stock")], 1,
         {"limit": 3, "used": 0, "left": 3}, {"limit": 1, "used": 1, "left": 0}, (0, False)),
        ([rec(1, KILL, "grant"), rec(2, KILL, "grant"), rec(3, KILL, "exhausted", breaker=True)], 0,
         {"limit": 3, "used": 2, "left": 1}, {"limit": 0, "used": 0, "left": 0}, (3, True)),
        # the DAG is not known: the user's budget is unknown, never guessed
        ([rec(1, APP, "stock")], None,
         {"limit": 3, "used": 0, "left": 3}, {"limit": None, "used": 1, "left": None}, (0, False)),
        # pending records are the runner's word, not a verdict
        ([rec(1, KILL, "pending")], 1, {"limit": 3, "used": 0, "left": 3}, {"limit": 1, "used": 0, "left": 1}, (0, False)),
    ],
)
def test_budgets(records, retries, infra, user, breaker):
    out = budgets(records, infra_limit=3, breaker_threshold=3, retries=retries)
    assert out["infra"] == infra
    assert out["retries"] == user
    assert (out["breaker"]["in_a_row"], out["breaker"]["open"]) == breaker


def test_the_breaker_verdict_is_recorded_in_the_ledger():
    policy = BudgetPolicy(infra_retries=5, breaker_threshold=2)
    ledger = Ledger((rec(1, KILL, "grant"),))
    assert decide(ledger, KILL, policy).breaker is True
    assert decide(Ledger(), KILL, policy).breaker is False
    judged = judge(ledger, try_number=2, max_tries=2, cause=KILL, budget=policy, infra_retry_delay=0)
    last = judged.ledger.attempts[-1]
    assert (last.verdict, last.breaker) == ("exhausted", True)
    assert Ledger.from_json(judged.ledger.to_json()).attempts[-1].breaker is True
    assert "breaker" not in judged.ledger.attempts[0].to_json()  # written only when true: old readers unaffected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0.0 s"), (12.34, "12.3 s"), (61, "1 min 1 s"), (4830, "1 h 20 min"), (3 * 86400 + 7200, "3 d 2 h"), (-5, "0.0 s")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
