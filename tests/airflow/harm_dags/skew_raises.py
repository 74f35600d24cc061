"""Version skew: a plain ``retries=1`` task that always raises. It imports nothing of airflow-resilience,
so components without the package can run it too."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test", "resilience"])
def skew_raises():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        mark(ctx["dag_run"].conf["marks"], t=ctx["ti"].try_number, ev="attempt-start", pid=os.getpid())
        raise RuntimeError(f"application failure on try {ctx['ti'].try_number}")

    work()


skew_raises()
