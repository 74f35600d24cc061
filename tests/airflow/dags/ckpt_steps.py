"""Acceptance DAG: a 60-step task that uses Checkpoint.iterate and Checkpoint.step.

Progress marks (one JSON line per event) go to the file named by the run conf ``marks``, so tests can see
exactly which items every attempt started and finished.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint




@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def ckpt_steps():
    @task(retries=3, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        marks = conf["marks"]
        try_number = ctx["ti"].try_number
        steps = int(conf.get("steps", 60))
        delay = float(conf.get("delay", 0.2))
        ckpt = Checkpoint.current(keep_on_clear=conf.get("keep_on_clear"), flush_interval=conf.get("flush_interval"))

        def provision():
            mark(marks, t=try_number, ev="step-computed")
            return {"cluster": "c-1"}

        cluster = ckpt.step("provision", provision)
        mark(marks, t=try_number, ev="attempt-start", done=ckpt.done_items("items"),
             plan=ckpt.resumption.plan.value, generation=ckpt.generation)
        for i in ckpt.iterate(range(steps), key="items"):
            mark(marks, t=try_number, ev="item-start", i=i, pid=os.getpid())
            time.sleep(delay)
            mark(marks, t=try_number, ev="item-end", i=i, pid=os.getpid())
        ckpt.set("finished_by", try_number)  # batched runs: only the task-end listener writes this
        return {"cluster": cluster["cluster"], "done": ckpt.done_items("items")}

    work()


ckpt_steps()
