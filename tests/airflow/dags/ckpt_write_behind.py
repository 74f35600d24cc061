"""Write-behind on a real Airflow: a fast loop whose checkpoint writes run on the writer thread while the
loop body keeps the task's supervisor channel busy from the main thread (a raw task_state_store read per
item), so the two threads' requests meet on SUPERVISOR_COMMS. Progress marks as in ``ckpt_steps``."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def ckpt_write_behind():
    @task(retries=3, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        marks = conf["marks"]
        try_number = ctx["ti"].try_number
        steps = int(conf.get("steps", 400))
        delay = float(conf.get("delay", 0.002))
        raw = ctx["task_state_store"]
        probe = {"try": try_number, "pid": os.getpid()}
        raw.set("probe", probe)
        ckpt = Checkpoint.current()
        mark(marks, t=try_number, ev="attempt-start", done=ckpt.done_items("items"), write_behind=ckpt.write_behind)
        wrong = 0
        for i in ckpt.iterate(range(steps), key="items"):
            mark(marks, t=try_number, ev="item-start", i=i, pid=os.getpid())
            got = raw.get("probe")  # main thread on the supervisor channel while the writer writes
            if got != probe:
                wrong += 1
                mark(marks, t=try_number, ev="probe-wrong", i=i, got=repr(got))
            time.sleep(delay)
            mark(marks, t=try_number, ev="item-end", i=i, pid=os.getpid())
        mark(marks, t=try_number, ev="done", wrong=wrong, writes=ckpt.writes)
        return ckpt.done_items("items")

    work()


ckpt_write_behind()
