"""Infrastructure-aware execution on a real Airflow: a checkpointed loop whose attempts the tests
disrupt (SIGTERM/SIGKILL of the supervisor or the runner), make fail (``raise_on_tries``), time out, or
mark failed. Progress marks go to the file named by the run conf ``marks``."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint, InfraRetryPolicy




def body():
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    marks, t = conf["marks"], ctx["ti"].try_number
    ckpt = Checkpoint.current()
    mark(marks, t=t, ev="attempt-start", done=ckpt.done_items("items"), pid=os.getpid(),
         ledger=[[r.try_number, r.cause.kind.value, r.cause.reason.value, r.verdict] for r in ckpt.context.attempts])
    if t in conf.get("raise_on_tries", []):
        raise ValueError(f"application failure on try {t}")
    for i in ckpt.iterate(range(int(conf.get("steps", 40))), key="items"):
        mark(marks, t=t, ev="item-start", i=i)
        time.sleep(float(conf.get("delay", 0.25)))
        mark(marks, t=t, ev="item-end", i=i)
    return ckpt.done_items("items")


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_steps():
    @task(retries=0)
    def work():
        return body()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_app_retries():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def work():
        return body()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_breaker():
    @task(retries=0, retry_delay=timedelta(seconds=1), retry_policy=InfraRetryPolicy(infra_retries=5, breaker_threshold=2))
    def work():
        return body()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_timeout():
    @task(retries=0, execution_timeout=timedelta(seconds=2))
    def work():
        return body()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_cap():
    @task(retries=0, retry_policy=InfraRetryPolicy(infra_retries=1))
    def work():
        return body()

    work()


infra_steps()
infra_cap()
infra_app_retries()
infra_breaker()
infra_timeout()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_templated():
    """The task policy wraps execute: templates must still be rendered on the copy that runs."""

    @task
    def echo(value: str) -> str:
        return value

    echo("run={{ run_id }}")


infra_templated()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def infra_mapped():
    """Mapped tasks are left as stock Airflow by the policy: the DAG must import and run."""

    @task
    def double(x: int) -> int:
        return 2 * x

    double.expand(x=[1, 2, 3])


infra_mapped()
