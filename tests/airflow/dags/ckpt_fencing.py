"""Fencing on a real Airflow: attempt 1 is frozen (SIGSTOP) until the scheduler gives up on it and
attempt 2 has taken over; then attempt 1 is thawed and tries to write its checkpoint."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint
from airflow_resilience.errors import StaleAttemptError




@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def ckpt_fencing():
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        marks = ctx["dag_run"].conf["marks"]
        try_number = ctx["ti"].try_number
        ckpt = Checkpoint.current(write_behind=bool(ctx["dag_run"].conf.get("write_behind", False)))
        steps = int(ctx["dag_run"].conf.get("steps", 400))
        try:
            for i in ckpt.iterate(range(steps), key="items"):
                mark(marks, t=try_number, ev="item-end", i=i)
                time.sleep(0.05)
        except StaleAttemptError as exc:
            mark(marks, t=try_number, ev="refused", error=str(exc))
            raise
        return ckpt.done_items("items")

    work()


ckpt_fencing()
