"""Do-no-harm: the same checkpointed loop in a DAG tagged ``resilience`` (opted in under selective enable)
and in an untagged one (stock Airflow there; ``Checkpoint`` still works as a library), and a plain task
that pokes at the package's own bookkeeping (a corrupt or oversized ledger written before it fails once)."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint


def loop():
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    marks, t = conf["marks"], ctx["ti"].try_number
    ckpt = Checkpoint.current()
    mark(marks, t=t, ev="attempt-start", done=ckpt.done_items("items"), pid=os.getpid())
    for i in ckpt.iterate(range(int(conf.get("steps", 20))), key="items"):
        mark(marks, t=t, ev="item-start", i=i)
        time.sleep(float(conf.get("delay", 0.2)))
        mark(marks, t=t, ev="item-end", i=i)
    return ckpt.done_items("items")


def plain():
    """No checkpoint: what every task that never asked for the package's help looks like."""
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    marks, t = conf["marks"], ctx["ti"].try_number
    mark(marks, t=t, ev="attempt-start", pid=os.getpid())
    spoil = conf.get("spoil_ledger")
    if spoil and t == 1:
        store = ctx["task_state_store"]
        if spoil == "corrupt":
            store.set("resilience:ledger", {"format": 99, "attempts": "not a list"})
        elif spoil == "oversized":
            # A ledger as an older version could have grown it (never trimmed): 120 records, ~50 KB.
            record = {"try_number": 0, "cause": {"kind": "application", "reason": "app.exception",
                                                  "summary": "x" * 300}, "verdict": "stock", "max_tries": 1}
            attempts = [dict(record, try_number=-i) for i in range(120)]
            value = {"format": 1, "attempts": attempts}
            assert len(json.dumps(value)) < 64_000
            store.set("resilience:ledger", value)
    for i in range(int(conf.get("steps", 5))):
        time.sleep(float(conf.get("delay", 0.2)))
        mark(marks, t=t, ev="item-end", i=i)
    if t in conf.get("raise_on_tries", []):
        raise ValueError(f"application failure on try {t}")
    mark(marks, t=t, ev="done")
    return t


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test", "resilience"])
def harm_tagged():
    @task(retries=0)
    def work():
        return loop()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def harm_untagged():
    @task(retries=0)
    def work():
        return loop()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test", "resilience"])
def harm_plain():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def work():
        return plain()

    work()


harm_tagged()
harm_untagged()
harm_plain()
