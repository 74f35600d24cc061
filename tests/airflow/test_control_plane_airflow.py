"""Control-plane disruptions on a real Airflow 3.3.2: the scheduler, the API server and the database restarted
and the triggerer killed while a task runs (or waits deferred), and the Celery broker restarted while a task
runs on a worker. Every run's task has ``retries=0``; the invariants are read from Airflow's own records
(``task_instance`` / ``task_instance_history``), never from the package's ledger.

The metadata database lives on a private PostgreSQL cluster the test may restart (``pg_ctl restart -m fast``),
and the Celery broker on a private ``redis-server``: the session's servers are never touched."""

from __future__ import annotations

import pytest

from airflow_resilience.drills.control import CONTROL_DAGS, ControlConfig, run_control
from airflow_resilience.drills.model import HARD_KILL_REDONE_ITEMS
from airflow_resilience.testing import AirflowEnvironment
from airflow_resilience.testing.pgcluster import PostgresUnavailable, PrivatePostgres
from airflow_resilience.testing.services import PrivateRedis, ServiceMissing, unavailable

pytestmark = pytest.mark.airflow

TASK = "work"


@pytest.fixture(scope="module")
def private_pg(suite_services):
    try:
        pg = PrivatePostgres(settings={"max_connections": "200"}).start()
    except PostgresUnavailable as exc:
        unavailable(f"PostgreSQL: no private cluster for the database-restart drill: {exc}")
    try:
        yield pg
    finally:
        pg.stop()


def _config(job_server) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": job_server.airflow_connection(),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__RESILIENCE__LOST_WORKER_CHECK_INTERVAL": "1",
        # a triggerer that died hands its triggers to the next one after this many seconds (stock: 30)
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    }


@pytest.fixture(scope="module")
def control_env(private_pg, job_server):
    af = AirflowEnvironment.create(dags=[CONTROL_DAGS], database="postgres", postgres_server=private_pg,
                                   config=_config(job_server))
    af.keep_alive()  # what systemd or Kubernetes does: Airflow's scheduler exits when its database goes away
    try:
        yield af
    finally:
        af.stop()


def assert_invariants(af, record, *, job: bool = False) -> None:
    """What a disrupted run must show in Airflow's records: success, no retry of the user's spent (retries=0,
    so every try after the first was an infrastructure grant: max_tries went up by one per extra try), no
    item finished more than once per disruption, and for a job exactly one external run."""
    tries = af.try_history(record.dag_id, record.run_id, TASK)
    if record.final_state != "success":  # the home is removed at stop: a CI failure carries its own diagnosis
        logs = "\n".join(f"--- try {t.try_number} log (tail):\n" + af.task_log(record.dag_id, record.run_id, TASK, t.try_number)[-3000:]
                         for t in tries)
        pytest.fail(f"final state {record.final_state}; causes {record.causes}; tries {[(t.try_number, t.state) for t in tries]}\n"
                    f"{af.diagnosis(record.dag_id, record.run_id)}\n{logs}")
    final = tries[-1]
    assert final.state == "success", [(t.try_number, t.state) for t in tries]
    grants = final.max_tries - 0  # the DAG's retries=0
    assert final.try_number - 1 == grants, ("a retry was spent that no grant paid for", [(t.try_number, t.max_tries) for t in tries])
    assert [t.try_number for t in tries] == list(range(1, final.try_number + 1))
    if job:
        assert record.job_runs == 1, record.job_runs
    else:
        assert all(record.finished_counts.get(str(i), 0) >= 1 for i in range(record.items)), record.finished_counts
        redone = sum(max(0, n - 1) for n in record.finished_counts.values())
        # the checkpoint's stated bound for a hard kill (an API outage past max_failed_heartbeats makes the
        # supervisor kill its task: a hard loss)
        assert redone <= HARD_KILL_REDONE_ITEMS * len(record.disruptions), (redone, record.attempt_starts)
    assert not record.violations, record.violations


@pytest.mark.parametrize("kind", ["scheduler_restart", "api_restart", "db_restart"])
def test_control_plane_restart_mid_checkpoint_keeps_every_invariant(control_env, job_server, tmp_path, kind):
    record = run_control(control_env, kind, tmp_path, job_server=job_server)
    assert [d["kind"] for d in record.disruptions] == [kind]
    assert_invariants(control_env, record)


def test_triggerer_killed_while_a_deferrable_run_waits_finishes_with_one_external_run(control_env, job_server, tmp_path):
    record = run_control(control_env, "triggerer_kill", tmp_path, job_server=job_server, config=ControlConfig(job_duration=12))
    tries = control_env.try_history(record.dag_id, record.run_id, TASK)
    assert_invariants(control_env, record, job=True)
    assert [t.try_number for t in tries] == [1], "the trigger moved to the new triggerer: no new try"


@pytest.fixture(scope="module")
def private_redis(suite_services):
    try:
        redis = PrivateRedis().start()
    except ServiceMissing as exc:
        unavailable(f"Redis: no private redis-server for the broker-restart drill: {exc}")
    try:
        yield redis
    finally:
        redis.stop()


def test_celery_broker_restart_mid_checkpoint_keeps_every_invariant(private_pg, private_redis, job_server, tmp_path):
    af = AirflowEnvironment.create(dags=[CONTROL_DAGS], executor="celery", celery_workers=1, worker_concurrency=2,
                                   postgres_server=private_pg, redis_server=private_redis, config=_config(job_server))
    af.keep_alive()
    try:
        record = run_control(af, "broker_restart", tmp_path, job_server=job_server)
        assert_invariants(af, record)
    finally:
        af.stop()

