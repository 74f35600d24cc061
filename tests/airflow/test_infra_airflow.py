"""Infrastructure-aware execution on a real Airflow 3.3.2 (LocalExecutor): causes, budgets, drain,
lost workers — each disruption a real signal to a real process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from airflow_resilience.ledger import LEDGER_KEY

pytestmark = pytest.mark.airflow


def ledger(af, dag, run_id):
    raw = af.state_store(dag, run_id, "work").get(LEDGER_KEY) or {"attempts": []}
    return [(a["try_number"], a["cause"]["kind"], a["cause"]["reason"], a["verdict"]) for a in raw["attempts"]]


def start(af, marks, dag, **conf):
    run_id = af.trigger(dag, conf={"marks": str(marks.path), **conf})
    return run_id


def wait_item(marks, t, i, timeout=120):
    return marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == t and e["i"] >= i, timeout=timeout)


@pytest.mark.sqlite_too
def test_sigterm_to_supervisor_drains_without_spending_a_retry(airflow_env, marks):
    """Eviction: SIGTERM to the supervisor at 1/3, SIGKILL of it 10 s later."""
    af, dag = airflow_env, "infra_steps"
    run_id = start(af, marks, dag, steps=36, delay=0.25)
    wait_item(marks, 1, 11)
    procs = af.task_processes(dag, run_id, "work")
    os.kill(procs.supervisor, signal.SIGTERM)
    sigterm_at = time.monotonic()
    resumed = marks.wait_for(lambda e: e["ev"] == "attempt-start" and e["pid"] != procs.runner, timeout=60)
    time.sleep(max(0.0, sigterm_at + 10 - time.monotonic()))  # the grace period runs out
    assert af.end_grace(procs) is False  # drained: nothing of the evicted attempt is left to kill
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"

    assert resumed["t"] == 2  # a new try, paid from the infrastructure budget
    assert resumed["done"] >= 12  # resumed from the checkpoint written on SIGTERM
    assert resumed["ledger"] == [[1, "infrastructure", "signal.sigterm", "grant"]]
    assert {e["i"] for e in marks.of("item-end")} == set(range(36))
    assert ledger(af, dag, run_id) == [(1, "infrastructure", "signal.sigterm", "grant")]
    assert af.task_instance(dag, run_id, "work").state == "success"


def test_sigkill_of_supervisor_is_a_lost_worker_granted_for_retries_0(airflow_env, marks):
    af, dag = airflow_env, "infra_steps"
    run_id = start(af, marks, dag, steps=30, delay=0.2)
    wait_item(marks, 1, 8)
    procs = af.task_processes(dag, run_id, "work")
    os.kill(procs.supervisor, signal.SIGKILL)
    nxt = marks.wait_for(lambda e: e["ev"] == "attempt-start" and e["t"] == 2, timeout=120)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    assert nxt["done"] >= 8  # resumed
    assert nxt["ledger"] == [[1, "infrastructure", "worker.lost", "grant"]]
    history = af.try_history(dag, run_id, "work")
    assert [t.try_number for t in history] == [1, 2]
    assert "infrastructure/worker.lost" in (history[0].retry_reason or "")
    # positive evidence from the lost-worker detector, not the (20 s here, 300 s stock) heartbeat timeout
    found = af.state_store(dag, run_id, "work")["resilience:evidence"]
    assert found["try_number"] == 1 and found["worker_lost"] is True
    assert f"supervisor pid {procs.supervisor}" in found["note"]


@pytest.mark.sqlite_too
def test_sigkill_of_runner_is_infrastructure_and_granted(airflow_env, marks, statsd_sink):
    af, dag = airflow_env, "infra_steps"
    since, started_at = statsd_sink.mark(), time.time()
    run_id = start(af, marks, dag, steps=20, delay=0.2)
    wait_item(marks, 1, 5)
    af.signal_runner(dag, run_id, "work", signal.SIGKILL)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    rows = ledger(af, dag, run_id)
    assert rows[0][:2] == (1, "infrastructure")
    assert rows[0][2] in {"signal.sigkill", "oom.killed"}
    assert rows[0][3] == "grant"
    assert [e["t"] for e in marks.of("attempt-start")] == [1, 2]

    # Plain StatsD without tags (as behind the Helm chart's statsd-exporter): the dotted names carry the cause.
    reason = rows[0][2].replace(".", "_")  # signal.sigkill -> signal_sigkill
    failures = f"resilience.failures.infrastructure.{reason}"
    grants = f"resilience.decisions.grant.infrastructure.{reason}"
    recovery = f"resilience.recovery.{reason}"

    def arrived() -> bool:
        return bool(statsd_sink.count(failures, since) and statsd_sink.count(grants, since)
                    and statsd_sink.timings(recovery, since) and statsd_sink.gauges("resilience.detector.last_round", since))

    deadline = time.monotonic() + 15
    while not arrived() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert statsd_sink.count(failures, since) >= 1
    assert statsd_sink.count(grants, since) >= 1
    assert statsd_sink.count("resilience.failures", since) >= 1  # the tagged form too (its tags dropped here)
    assert statsd_sink.count("resilience.decisions", since) >= 1
    writes = statsd_sink.timings("resilience.checkpoint.write", since)
    assert len(writes) >= 20 and all(ms >= 0 for ms in writes)  # every finished item is written, in both tries
    assert len(statsd_sink.timings(recovery, since)) == 1  # at the start of try 2
    tries = af.try_history(dag, run_id, "work")
    gap_ms = (tries[1].start_date - tries[0].end_date).total_seconds() * 1000  # Airflow's own record of the gap
    assert abs(statsd_sink.timings(recovery, since)[0] - gap_ms) < 3000, (statsd_sink.timings(recovery, since), gap_ms)
    assert statsd_sink.timings("resilience.recovery", since) == statsd_sink.timings(recovery, since)
    assert started_at <= statsd_sink.gauges("resilience.detector.last_round", since)[-1] <= time.time()  # a timestamp of this test's rounds
    assert statsd_sink.gauges("resilience.detector.round_duration", since)
    assert max(statsd_sink.gauges("resilience.detector.workers_seen.local", since), default=0) >= 1  # it saw the supervisor


def test_application_retries_stay_the_users_even_with_infra_failures_between(airflow_env, marks):
    """retries=1: try 1 raises, try 2 is SIGKILLed (infra), try 3 raises -> FAILED: two application
    attempts, exactly as stock Airflow, the infrastructure loss paid from its own budget."""
    af, dag = airflow_env, "infra_app_retries"
    run_id = start(af, marks, dag, steps=40, delay=0.2, raise_on_tries=[1, 3])
    wait_item(marks, 2, 3)
    af.signal_runner(dag, run_id, "work", signal.SIGKILL)
    assert af.wait_for_run(dag, run_id, timeout=180) == "failed"
    history = af.try_history(dag, run_id, "work")
    assert [t.try_number for t in history] == [1, 2, 3]
    assert history[-1].state == "failed"
    rows = ledger(af, dag, run_id)
    assert [r[1] for r in rows] == ["application", "infrastructure", "application"]
    assert rows[1][3] == "grant"
    assert "application retries exhausted: 1 of retries=1 used" in af.task_log(dag, run_id, "work", 3)


def test_breaker_fails_with_a_message_naming_it(airflow_env, marks):
    """InfraRetryPolicy(infra_retries=5, breaker_threshold=2): the second SIGKILL in a row opens the
    breaker; the task fails with a message naming it (retry_reason and audit log), no third attempt."""
    af, dag = airflow_env, "infra_breaker"
    run_id = start(af, marks, dag, steps=40, delay=0.2)
    for t in (1, 2):
        wait_item(marks, t, 2)
        af.wait_for_task(dag, run_id, "work", {"running"}, try_number=t)
        af.signal_runner(dag, run_id, "work", signal.SIGKILL)
    assert af.wait_for_run(dag, run_id, timeout=180) == "failed"
    expected = "circuit breaker open: signal.sigkill 2 times in a row (breaker_threshold=2)"
    history = af.try_history(dag, run_id, "work")
    assert [t.try_number for t in history] == [1, 2]
    assert expected in (history[1].retry_reason or "")
    audit = af.sql("SELECT extra FROM log WHERE event = 'resilience_budget_exhausted' AND run_id = :r", r=run_id)
    assert expected in audit[0][0]
    assert marks.of("attempt-start", 3) == []
    assert [r[3] for r in ledger(af, dag, run_id)] == ["grant", "exhausted"]


def test_user_marking_a_running_task_failed_is_manual(airflow_env, marks):
    af, dag = airflow_env, "infra_steps"
    run_id = start(af, marks, dag, steps=60, delay=0.2)
    wait_item(marks, 1, 3)
    af.set_task_state(dag, run_id, "work", "failed")
    assert af.wait_for_run(dag, run_id, timeout=120) == "failed"
    time.sleep(3)
    ti = af.task_instance(dag, run_id, "work")
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert marks.of("attempt-start", 2) == []
    rows = ledger(af, dag, run_id)
    assert rows == [(1, "manual", "user.marked_state", "manual")], rows


def test_execution_timeout_gets_no_infra_grant(airflow_env, marks):
    af, dag = airflow_env, "infra_timeout"
    run_id = start(af, marks, dag, steps=40, delay=0.2)
    assert af.wait_for_run(dag, run_id, timeout=120) == "failed"
    ti = af.task_instance(dag, run_id, "work")
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert ledger(af, dag, run_id) == [(1, "timeout", "timeout.execution", "stock")]


def test_wrapped_tasks_still_render_templates(airflow_env):
    import json

    af, dag = airflow_env, "infra_templated"
    run_id = af.trigger(dag)
    assert af.wait_for_run(dag, run_id) == "success"
    rows = af.sql("SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND key = 'return_value'", d=dag, r=run_id)
    value = rows[0][0]
    if isinstance(value, (bytes, str)) and str(value if isinstance(value, str) else value.decode()).startswith('"'):
        value = json.loads(value)  # SQLite keeps the JSON text; PostgreSQL's JSON column decodes it
    assert value == f"run={run_id}"
    assert "cannot be called outside of the Task Runner" not in af.task_log(dag, run_id, "echo", 1)


def test_infra_budget_cap_fails_with_a_message_naming_it(airflow_env, marks):
    """InfraRetryPolicy(infra_retries=1): a killed runner is granted, the lost worker after it is not."""
    af, dag = airflow_env, "infra_cap"
    run_id = start(af, marks, dag, steps=40, delay=0.2)
    wait_item(marks, 1, 2)
    af.wait_for_task(dag, run_id, "work", {"running"}, try_number=1)
    af.signal_runner(dag, run_id, "work", signal.SIGKILL)
    wait_item(marks, 2, 2)
    af.wait_for_task(dag, run_id, "work", {"running"}, try_number=2)
    af.signal_supervisor(dag, run_id, "work", signal.SIGKILL)
    assert af.wait_for_run(dag, run_id, timeout=180) == "failed"
    rows = ledger(af, dag, run_id)
    assert [(r[2], r[3]) for r in rows] == [("signal.sigkill", "grant"), ("worker.lost", "exhausted")]
    history = af.try_history(dag, run_id, "work")
    assert "infrastructure budget exhausted: 1 of infra_retries=1 used" in (history[-1].retry_reason or "")


def test_dag_with_mapped_tasks_imports_and_runs(airflow_env):
    af, dag = airflow_env, "infra_mapped"
    run_id = af.trigger(dag)
    assert af.wait_for_run(dag, run_id) == "success"
    states = af.sql("SELECT state FROM task_instance WHERE dag_id = :d AND run_id = :r", d=dag, r=run_id)
    assert sorted(r[0] for r in states) == ["success"] * 3
