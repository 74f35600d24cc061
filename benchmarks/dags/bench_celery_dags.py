"""Benchmark DAG for Celery disruptions: N steps of ``delay`` seconds, retries=1. With conf
``checkpoint: true`` progress is checkpointed (airflow-resilience); without, a plain loop (what a stock
Airflow user has). Marks: JSON lines with the runner's pid."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task


def _mark(path: str, **event) -> None:
    event["at"] = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["bench"])
def bench_celery_steps():
    @task(retries=1, retry_delay=timedelta(seconds=2))
    def work():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf
        marks, t = conf["marks"], ctx["ti"].try_number
        items = range(int(conf["steps"]))
        if conf.get("checkpoint"):
            from airflow_resilience import Checkpoint

            items = Checkpoint.current().iterate(items, key="items")
        _mark(marks, ev="attempt-start", t=t, pid=os.getpid())
        for i in items:
            time.sleep(float(conf["delay"]))
            _mark(marks, ev="item-end", t=t, i=i)

    work()


bench_celery_steps()
