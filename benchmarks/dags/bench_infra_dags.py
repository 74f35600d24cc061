"""DAG of the infrastructure benchmark: a 60 x 1 s load, checkpointed or as a plain loop (run conf)."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from airflow_resilience import Checkpoint


def mark(path: str, **event) -> None:
    event["at"] = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_load():
    @task(retries=1, retry_delay=timedelta(seconds=2))
    def load():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf
        marks, t = conf["marks"], ctx["ti"].try_number
        items = range(int(conf.get("items", 60)))
        mark(marks, t=t, ev="attempt-start", pid=os.getpid())
        loop = Checkpoint.current().iterate(items, key="items") if conf.get("checkpoint") else items
        for i in loop:
            time.sleep(float(conf.get("seconds", 1.0)))
            mark(marks, t=t, ev="item-end", i=i)
        return len(items)

    load()


bench_load()
