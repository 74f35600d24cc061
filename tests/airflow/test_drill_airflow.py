"""Drills on the session's real Airflow (the package on): measurements match Airflow's try history, and a
small chaos run keeps every invariant. The side-by-side drill against stock Airflow is `make demo`."""

from __future__ import annotations

import pytest

from airflow_resilience.drills import DrillConfig, Scenario, chaos, run_drill

pytestmark = pytest.mark.airflow


def test_drill_numbers_match_the_try_history(airflow_env, job_server):
    af = airflow_env
    result = run_drill(
        [Scenario("oom"), Scenario("lost_worker"), Scenario("eviction")],
        sides=("ours",), environments={"ours": af}, job_server=job_server,
        config=DrillConfig(items=9, seconds=0.5, grace=3),
    )
    assert len(result.runs) == 3 and not result.meta["failed_runs"]
    for run in result.runs:
        history = af.try_history(run.dag_id, run.run_id, "work")
        assert [(a.try_number, a.state) for a in run.attempts] == [(h.try_number, h.state) for h in history]
        assert run.final_state == af.run_state(run.dag_id, run.run_id) == "success"
        assert run.retries_spent == 0 and run.violations == []
        assert run.recovered_s is not None and run.recovered_s > 0
        assert run.work_redone_s <= 0.5  # at most the item that was running
        assert all(c.startswith("infrastructure/") and c.endswith(":grant") for c in run.causes), run.causes
    causes = {run.scenario: run.causes[0].split(":")[0] for run in result.runs}
    assert causes == {"oom": "infrastructure/signal.sigkill", "lost_worker": "infrastructure/worker.lost",
                      "eviction": "infrastructure/signal.sigterm"}


@pytest.mark.parametrize("airflow_database", ["postgres"], indirect=True)
def test_small_chaos_run_keeps_every_invariant(airflow_env, job_server):
    """Six random disruptions among concurrent runs; every invariant holds. PostgreSQL only: the same
    scenarios run on both databases in the tests above; this one repeats them at random."""
    result = chaos(
        6, seed=7, environment=airflow_env, job_server=job_server, concurrency=3,
        config=DrillConfig(items=12, seconds=0.4, job_duration=8, grace=3),
    )
    assert not result.meta["failed_runs"]
    assert sum(len(r.disruptions) for r in result.runs) == 6
    assert {r.dag_id for r in result.runs} >= {"resilience_drill_load"}
    broken = [(r.run_id, r.disruptions, v) for r in result.runs for v in r.violations]
    assert broken == []
    assert all(r.final_state == "success" for r in result.runs)


def test_drill_of_your_own_dag_uses_the_try_history(airflow_env, marks):
    """A user's DAG (here infra_steps, already deployed) writes no drill marks: recovery is measured from
    Airflow's try history."""
    af = airflow_env
    cfg = DrillConfig(dag_id="infra_steps", task_id="work", at_seconds=2,
                      conf={"marks": str(marks.path), "steps": 20, "delay": 0.2})
    result = run_drill([Scenario("oom", workload="dag")], sides=("ours",), environments={"ours": af}, config=cfg)
    (run,) = result.runs
    history = af.try_history("infra_steps", run.run_id, "work")
    assert [(a.try_number, a.state) for a in run.attempts] == [(h.try_number, h.state) for h in history] == [
        (1, "failed"), (2, "success")]
    assert run.recovered_s == round(history[1].start_date.timestamp() - run.disruptions[0]["at"], 3)
    assert run.work_redone_s is None and run.causes == ["infrastructure/signal.sigkill:grant"]
    assert run.violations == []
