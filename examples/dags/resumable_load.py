"""The demo: the same 30-partition load twice — once as a plain loop (stock Airflow), once with
``Checkpoint.iterate`` — so a killed attempt can be compared. Each partition writes a progress mark
(JSON line) to the file named by the run conf ``marks``, which is how the demo counts work redone."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from airflow_resilience import Checkpoint


def copy_partition(marks: str, try_number: int, part: int, seconds: float) -> None:
    time.sleep(seconds)  # the real work: copy one partition
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({"t": try_number, "part": part}) + "\n").encode())
    finally:
        os.close(fd)


def _conf():
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    return ctx["ti"].try_number, conf["marks"], int(conf.get("parts", 30)), float(conf.get("seconds", 0.3))


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-demo"])
def load_stock():
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def load():
        try_number, marks, parts, seconds = _conf()
        for part in range(parts):
            copy_partition(marks, try_number, part, seconds)
        return parts

    load()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-demo"])
def load_resumable():
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def load():
        try_number, marks, parts, seconds = _conf()
        ckpt = Checkpoint.current()
        for part in ckpt.iterate(range(parts), key="partitions"):
            copy_partition(marks, try_number, part, seconds)
        return parts

    load()


load_stock()
load_resumable()
