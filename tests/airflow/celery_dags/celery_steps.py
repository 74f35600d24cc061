"""Celery acceptance DAGs: a checkpointed task of N steps with retries=0, and a task whose code fails.

Marks (JSON lines, file named by the run conf ``marks``) carry the runner's pid, so tests can tell which
worker ran which attempt."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def celery_steps():
    @task(retries=0)
    def work():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        marks, t = conf["marks"], ctx["ti"].try_number
        ckpt = Checkpoint.current()
        mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=ckpt.done_items("items"))
        for i in ckpt.iterate(range(int(conf.get("steps", 60))), key="items"):
            mark(marks, ev="item-start", t=t, i=i, pid=os.getpid())
            time.sleep(float(conf.get("delay", 1.0)))
            mark(marks, ev="item-end", t=t, i=i, pid=os.getpid())
        hold = conf.get("hold_until")  # a file the test creates when it has seen what it waits for
        deadline = time.monotonic() + 300
        while hold and not os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.2)
        mark(marks, ev="attempt-end", t=t, pid=os.getpid())
        return ckpt.done_items("items")

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def celery_app_error():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        mark(ctx["dag_run"].conf["marks"], ev="attempt-start", t=ctx["ti"].try_number, pid=os.getpid())
        raise ValueError("user code failed")

    work()


celery_steps()
celery_app_error()
