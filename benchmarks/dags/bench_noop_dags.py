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
