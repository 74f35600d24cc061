"""Drills on real Airflows: the three sides' measurements match Airflow's try history (the session's Airflow
for ours, a package-off one for both stock sides), and a small chaos run keeps every invariant."""

from __future__ import annotations

import pytest

from airflow_resilience.drills import DrillConfig, Scenario, chaos, run_drill
from airflow_resilience.drills.model import HARD_KILL_REDONE_ITEMS, SIDES
from airflow_resilience.drills.runner import boot

pytestmark = pytest.mark.airflow


def test_drill_numbers_match_the_try_history(airflow_env, job_server):
    """All three sides (stock and stock-checkpointed on a package-off Airflow booted here, ours on the
    session's): every number of the record is Airflow's own (task_instance, task_instance_history, dag_run)."""
    af = airflow_env
    scenarios = [Scenario("oom"), Scenario("lost_worker"), Scenario("eviction")]
    # ours gets no retry; the stock sides one (without it they fail at the first disruption)
    cfg = DrillConfig(items=9, seconds=0.5, grace=3, retries={"stock": 1, "stock-checkpointed": 1})
    stock_af = boot("stock", database=af.database_kind, heartbeat_timeout=20, job_server=job_server, parallelism=8)
    try:
        result = run_drill(scenarios, environments={"ours": af, "stock": stock_af}, job_server=job_server,
                           config=cfg, heartbeat_timeout=20)
        assert not result.meta["failed_runs"]
        assert result.meta["retries"] == {"stock": 1, "stock-checkpointed": 1, "ours": 0}
        assert sorted((r.side, r.scenario) for r in result.runs) == sorted(
            (side, sc.label) for side in SIDES for sc in scenarios)
        for run in result.runs:
            env = af if run.side == "ours" else stock_af
            history = env.try_history(run.dag_id, run.run_id, "work")
            ti = env.task_instance(run.dag_id, run.run_id, "work")
            assert run.dag_id == ("resilience_drill_load" if run.side == "ours" else "resilience_drill_load_r1")
            assert [(a.try_number, a.state) for a in run.attempts] == [(h.try_number, h.state) for h in history]
            assert run.final_state == env.run_state(run.dag_id, run.run_id)
            assert run.retries == cfg.retries_for(run.side) and run.max_tries == ti.max_tries
            assert run.grants == ti.max_tries - run.retries
            assert run.retries_spent == len(history) - 1 - run.grants
            assert run.failed_tries == sum(1 for h in history if h.state in ("failed", "up_for_retry"))
            if run.side == "ours":
                assert run.final_state == "success" and run.violations == []
                assert run.retries_spent == 0 and run.grants == len(history) - 1 == 1  # paid by a grant
                assert run.recovered_s is not None and run.recovered_s > 0
                # the checkpoint's hard-kill bound with write-behind (the default): two items of 0.5 s
                assert run.work_redone_s <= HARD_KILL_REDONE_ITEMS * cfg.seconds
                assert all(c.startswith("infrastructure/") and c.endswith(":grant") for c in run.causes), run.causes
            else:  # the package off: no grant, no ledger; a second try is paid from retries
                assert run.grants == 0 and ti.max_tries == 1 and run.causes == []
                assert run.retries_spent == len(history) - 1
                if run.scenario != "eviction":  # a SIGKILL ends the try: the retry is spent
                    assert run.final_state == "success" and run.retries_spent == 1
            if run.side == "stock-checkpointed" and len(history) > 1:  # resumed from task_state_store
                assert [s["done"] for s in run.attempt_starts][0] == 0 and run.attempt_starts[-1]["done"] >= 3
                assert run.final_state != "success" or run.work_redone_s <= 0.5
            if run.side == "stock" and run.scenario == "oom":  # the plain loop started over
                assert run.work_redone_s >= 1.5
        baselines = {(r["scenario"], r["baseline"]) for r in result.ratios()}
        assert baselines == {(sc.label, b) for sc in scenarios for b in ("stock", "stock-checkpointed")}
    finally:
        stock_af.stop()
    causes = {run.scenario: run.causes[0].split(":")[0] for run in result.runs if run.side == "ours"}
    assert causes == {"oom": "infrastructure/signal.sigkill", "lost_worker": "infrastructure/worker.lost",
                      "eviction": "infrastructure/signal.sigterm"}


@pytest.mark.parametrize("airflow_database", ["postgres"], indirect=True)
def test_small_chaos_run_keeps_every_invariant(airflow_env, job_server):
    """Six random disruptions among concurrent runs; every invariant holds. PostgreSQL only: the same
    scenarios run on both databases in the tests above; this one repeats them at random."""
    result = chaos(
        6, seed=7, environment=airflow_env, job_server=job_server, concurrency=3,
        kinds=("eviction", "lost_worker", "oom"),  # the session's Airflow is shared: no control-plane restarts here
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
