"""DAG of the overhead benchmark: one task that does nothing (what every task pays for the package)."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_noop():
    @task(retries=1)
    def noop():
        return None

    noop()


bench_noop()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_lost():
    """A 20 s task whose supervisor the benchmark SIGKILLs: the scheduler-side listener judges the loss."""

    @task(retries=0)
    def sleepy():
        import time

        time.sleep(20)

    sleepy()


bench_lost()
