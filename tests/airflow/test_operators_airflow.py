"""Resumable operators on a real Airflow 3.3.2 with the Databricks provider's real hooks talking to the
loopback Jobs API server: every kill ends with the run's result and exactly one run per task instance."""

from __future__ import annotations

import json
import os
import signal

import pytest

from airflow_resilience.attempt import doc_key
from airflow_resilience.resumable import RESUME_KEY

pytestmark = pytest.mark.airflow


def start(af, marks, dag, **conf):
    return af.trigger(dag, conf={"marks": str(marks.path), **conf})


def kill_at(af, marks, dag, run_id, ev, victim):
    """Wait for try 1 to reach ``ev``, then SIGKILL its runner or its supervisor."""
    marks.wait_for(lambda e: e["ev"] == ev and e["t"] == 1, timeout=120)
    procs = af.task_processes(dag, run_id, "job")
    os.kill(procs.runner if victim == "runner" else procs.supervisor, signal.SIGKILL)
    return procs


def attempts(marks):
    return sorted({e["t"] for e in marks.read()})


KILL_POINTS = ["before_submit", "after_submit", "polling", "finished"]


@pytest.mark.parametrize("victim", ["runner", "supervisor"])
@pytest.mark.parametrize("ev", KILL_POINTS)
def test_submit_run_killed_anywhere_runs_exactly_once(airflow_env, marks, job_server, ev, victim):
    af, dag = airflow_env, "ops_submit"
    run_id = start(af, marks, dag, duration=4, pause_at=ev)
    kill_at(af, marks, dag, run_id, ev, victim)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"

    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 1, runs  # exactly one run submitted, whatever the kill point
    assert runs[0]["result_state"] == "SUCCESS"
    ti = af.task_instance(dag, run_id, "job")
    assert ti.try_number == 2  # retries=0: the second try was paid from the infrastructure budget
    second = [e for e in marks.read() if e["t"] == 2]
    if ev in ("polling", "finished"):
        # the run id was saved: try 2 does not submit at all, it reconnects to the same run
        assert not [e for e in second if e["ev"] == "before_submit"]
        assert [e["run_id"] for e in second if e["ev"] in ("polling", "finished")][0] == runs[0]["run_id"]
    record = submit_record(af.state_store(dag, run_id, "job"))
    assert record["job_id"] == runs[0]["run_id"] and record["token"] == runs[0]["token"]


def submit_record(saved):
    """The submit_once record of the latest checkpoint document."""
    latest = max((k for k in saved if k.startswith("resilience:checkpoint:try-")), key=lambda k: int(k.rsplit("-", 1)[1]))
    (record,) = [v for k, v in saved[latest]["values"].items() if k.startswith("resilience:submit:")]
    return record


@pytest.mark.sqlite_too
def test_stock_operator_submits_twice_where_ours_submits_once(airflow_env, marks, job_server):
    """Same kill (after the server accepted the submit, before the run id was saved), the provider's
    operator as shipped: its ResumableJobMixin had not saved the id, so the next try submits again."""
    af, dag = airflow_env, "ops_stock_submit"
    run_id = start(af, marks, dag, duration=3, pause_at="after_submit")
    kill_at(af, marks, dag, run_id, "after_submit", "runner")
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    assert len(job_server.runs(run_name=run_id)) == 2


@pytest.mark.parametrize("ev", ["before_defer", "complete"])
def test_deferrable_submit_run_killed_around_defer_runs_once(airflow_env, marks, job_server, ev):
    af, dag = airflow_env, "ops_submit_deferrable"
    # 8 s: the trigger fires after the deferring worker process has exited. With a faster trigger, stock
    # Airflow 3.3.2 can take the late "success" of the deferring workload for the resumed one and fail
    # it (scheduler log: "finished with state success, but the task instance's state attribute is
    # queued"); the next try then reconnects (one run) but never enters execute_complete in try 1.
    run_id = start(af, marks, dag, duration=8, pause_at=ev)
    kill_at(af, marks, dag, run_id, ev, "runner")
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 1 and runs[0]["result_state"] == "SUCCESS", runs
    second = [e for e in marks.read() if e["t"] == 2]
    assert second and not [e for e in second if e["ev"] == "before_submit"]


def test_run_now_killed_after_submit_runs_once(airflow_env, marks, job_server):
    af, dag = airflow_env, "ops_run_now"
    run_id = start(af, marks, dag, duration=3, pause_at="after_submit")
    kill_at(af, marks, dag, run_id, "after_submit", "runner")
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 1 and runs[0]["kind"] == "run-now" and runs[0]["job_id"] == 77


def test_clear_after_success_submits_one_new_run(airflow_env, marks, job_server):
    af, dag = airflow_env, "ops_submit"
    run_id = start(af, marks, dag, duration=1)
    assert af.wait_for_run(dag, run_id, timeout=120) == "success"
    assert len(job_server.runs(run_name=run_id)) == 1
    af.clear(dag, run_id, ["job"])
    af.wait_for_task(dag, run_id, "job", {"success"}, try_number=2, timeout=120)
    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 2 and runs[0]["token"] != runs[1]["token"], runs  # a new generation, one new run


@pytest.mark.parametrize(("ev", "redone"), [("run", "run"), ("cleanup", None)])
def test_three_phase_operator_resumes_at_the_phase_it_was_killed_in(airflow_env, marks, ev, redone):
    af, dag = airflow_env, "ops_three_phase"
    run_id = start(af, marks, dag, steps=5, pause_at=ev)
    kill_at(af, marks, dag, run_id, ev, "runner")
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"

    events = [(e["t"], e["ev"]) for e in marks.read() if e["ev"] in ("provision", "run", "cleanup")]
    assert [e for e in events if e[1] == "provision"] == [(1, "provision")]  # never provisioned again
    second = [name for t, name in events if t == 2]
    assert second[0] == ev  # entered at the phase it was killed in
    clusters = {e["cluster"] for e in marks.read() if "cluster" in e}
    assert len(clusters) == 1  # with the saved kwargs: the cluster provisioned by try 1
    assert af.xcom(dag, run_id, "job")["rows"] == 50  # the return value of the resumed phases
    if redone is None:
        assert not [e for e in marks.read() if e["ev"] == "run-step" and e["t"] == 2]


def test_application_retry_resumes_at_the_saved_phase(airflow_env, marks):
    af, dag = airflow_env, "ops_three_phase"
    run_id = start(af, marks, dag, steps=3, fail_in_run=True)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    events = [(e["t"], e["ev"]) for e in marks.read() if e["ev"] in ("provision", "run", "cleanup")]
    assert events == [(1, "provision"), (1, "run"), (2, "run"), (2, "cleanup")]


def test_unknown_resume_method_fails_with_a_clear_message_and_keeps_the_point(airflow_env, marks):
    af, dag = airflow_env, "ops_three_phase"
    run_id = start(af, marks, dag, steps=2, pause_at="cleanup")
    marks.wait_for(lambda e: e["ev"] == "cleanup" and e["t"] == 1)
    saved = af.state_store(dag, run_id, "job")
    doc = saved[doc_key(1)]
    doc["values"][RESUME_KEY]["method"] = "tidy_up"  # a deploy renamed the method
    af.write_state_store_raw(dag, run_id, "job", doc_key(1), json.dumps(doc))
    af.signal_runner(dag, run_id, "job", signal.SIGKILL)
    assert af.wait_for_run(dag, run_id, timeout=180) == "failed"
    ti = af.task_instance(dag, run_id, "job")
    assert ti.try_number == 2  # non-retryable: the retry (retries=1) is not spent on it
    log = af.task_log(dag, run_id, "job", 2)
    assert "ThreePhase has no method 'tidy_up' (the operator's own methods: cleanup, run)" in log
    assert "airflow resilience checkpoint reset" in log
    after = af.state_store(dag, run_id, "job")
    assert after[doc_key(1)]["values"][RESUME_KEY]["method"] == "tidy_up"  # left for inspection
    assert not [e for e in marks.read() if e["t"] == 2 and e["ev"] in ("provision", "run")]  # no silent restart


def test_generic_external_job_found_by_token_after_kill(airflow_env, marks, job_server):
    af, dag = airflow_env, "ops_generic"
    run_id = start(af, marks, dag, duration=3, pause_at="after_submit")
    kill_at(af, marks, dag, run_id, "after_submit", "runner")
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 1 and runs[0]["result_state"] == "SUCCESS"
    assert not [e for e in marks.read() if e["t"] == 2 and e["ev"] == "after_submit"]  # found, not resubmitted


def test_three_phase_operator_drained_by_sigterm_resumes_in_phase_2(airflow_env, marks):
    """An eviction's SIGTERM while in phase 2: the attempt drains (no retry spent) and the next attempt
    enters phase 2 with the saved kwargs."""
    af, dag = airflow_env, "ops_three_phase"
    run_id = start(af, marks, dag, steps=5, pause_at="run")
    marks.wait_for(lambda e: e["ev"] == "run" and e["t"] == 1)
    af.signal_runner(dag, run_id, "job", signal.SIGTERM)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    events = [(e["t"], e["ev"]) for e in marks.read() if e["ev"] in ("provision", "run", "cleanup")]
    assert events == [(1, "provision"), (1, "run"), (2, "run"), (2, "cleanup")]
    ledger = af.state_store(dag, run_id, "job")["resilience:ledger"]["attempts"]
    assert [(a["cause"]["kind"], a["verdict"]) for a in ledger] == [("infrastructure", "grant")]


@pytest.mark.sqlite_too
def test_sigterm_between_submit_and_record_reconnects_to_the_one_job(airflow_env, marks, job_server):
    """An eviction's SIGTERM after the external system created the job and before its id was saved, with
    ``find=None``: the drain waits for the id to be recorded (a critical section of submit_once), so the next
    attempt reconnects to the one job — no UnconfirmedSubmissionError, no second job."""
    af, dag = airflow_env, "ops_submit_window"
    run_id = start(af, marks, dag, duration=2, ack_delay=3)
    marks.wait_for(lambda e: e["ev"] == "after_submit" and e["t"] == 1, timeout=120)
    af.signal_runner(dag, run_id, "job", signal.SIGTERM)
    assert af.wait_for_run(dag, run_id, timeout=180) == "success"
    runs = job_server.runs(run_name=run_id)
    assert len(runs) == 1 and runs[0]["result_state"] == "SUCCESS"
    assert [e["t"] for e in marks.read() if e["ev"] == "after_submit"] == [1]  # submitted once
    waiting = [e for e in marks.read() if e["ev"] == "waiting"]
    assert [e["t"] for e in waiting] == [2] and waiting[0]["run_id"] == runs[0]["run_id"]  # reconnected
    ledger = af.state_store(dag, run_id, "job")["resilience:ledger"]["attempts"]
    assert [(a["cause"]["reason"], a["verdict"]) for a in ledger] == [("signal.sigterm", "grant")]
    assert "UnconfirmedSubmissionError" not in af.task_log(dag, run_id, "job", 2)
