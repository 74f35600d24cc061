"""The drill DAGs (deployed by ``airflow resilience drill``; not imported by the package).

``resilience_drill_load``: one task that works through ``items`` items of ``seconds`` each. The run conf
``mode`` chooses how (one DAG for the three sides, so only the loop differs):

* ``plain`` — a plain loop (the ``stock`` side: what a stock Airflow user writes first);
* ``task_state_store`` — a careful hand-written checkpoint in stock Airflow's own
  ``context["task_state_store"]`` (the ``stock-checkpointed`` side): the count of finished items is
  saved after each item and a retry resumes from it;
* ``checkpoint`` — ``Checkpoint.iterate`` (the ``ours`` side: what a user of airflow-resilience writes).

(The older boolean conf ``checkpoint`` still means ``mode = checkpoint``.)

``resilience_drill_job``: one Databricks run on the loopback Jobs API server through the package's
resumable operator (``ours``); ``resilience_drill_job_stock``: through the provider's own
``DatabricksSubmitRunOperator``, which in Airflow 3.3.2 already uses ``ResumableJobMixin`` (``durable``
by default: it saves the run id in ``task_state_store`` and reconnects on a retry) — so it is both the
``stock`` and the ``stock-checkpointed`` side of a job drill.

Retries are a parse-time task attribute, so every DAG exists once per ``retries`` value the drill can
choose: ``<dag_id>`` has ``retries=0`` and ``<dag_id>_r1`` … ``<dag_id>_r3`` have 1 to 3
(:func:`airflow_resilience.drills.runner.dag_for`).

Every attempt writes progress marks (JSON lines) to the file named by the run conf ``marks``: that is how
the drill measures work redone and time to recover.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import DAG, get_current_context, task

#: retries of the DAG variants: "" -> 0, "_r1" -> 1, ...
MAX_RETRIES = 3
#: the hand-written checkpoint's key in task_state_store (stock-checkpointed side)
DONE_KEY = "drill:done_items"


def _suffix(retries: int) -> str:
    return f"_r{retries}" if retries else ""


def _mark(path: str, **event) -> None:
    event.setdefault("at", time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


def _mode(conf: dict) -> str:
    mode = conf.get("mode") or ("checkpoint" if conf.get("checkpoint") else "plain")
    if mode not in ("plain", "task_state_store", "checkpoint"):
        raise ValueError(f"run conf 'mode' must be plain, task_state_store or checkpoint, got {mode!r}")
    return mode


def _work():
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    marks, t = conf["marks"], ctx["ti"].try_number
    items, seconds = int(conf.get("items", 30)), float(conf.get("seconds", 1.0))
    mode = _mode(conf)
    if mode == "checkpoint":
        from airflow_resilience import Checkpoint

        ckpt = Checkpoint.current()
        _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=ckpt.done_items("items"), mode=mode)
        for i in ckpt.iterate(range(items), key="items"):
            time.sleep(seconds)
            _mark(marks, ev="item-end", t=t, i=i)
    elif mode == "task_state_store":
        # The best a stock Airflow 3.3 user can do by hand: the store survives retries; save the count of
        # finished items after each item, resume from it.
        store = ctx["task_state_store"]
        done = int(store.get(DONE_KEY, 0) or 0)
        _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=done, mode=mode)
        for i in range(done, items):
            time.sleep(seconds)
            _mark(marks, ev="item-end", t=t, i=i)
            store.set(DONE_KEY, i + 1)
    else:
        _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=0, mode=mode)
        for i in range(items):
            time.sleep(seconds)
            _mark(marks, ev="item-end", t=t, i=i)
    _mark(marks, ev="attempt-end", t=t)
    return items


for _retries in range(MAX_RETRIES + 1):
    with DAG(f"resilience_drill_load{_suffix(_retries)}", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
             catchup=False, tags=["resilience-drill"], max_active_runs=64):
        task(task_id="work", retries=_retries, retry_delay=timedelta(seconds=2))(_work)()


try:
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    from airflow_resilience.providers.databricks import ResumableDatabricksSubmitRunOperator
except ImportError:  # the job drill needs the Databricks provider
    DatabricksSubmitRunOperator = None

if DatabricksSubmitRunOperator is not None:
    _JSON = {
        "run_name": "{{ run_id }}",
        "notebook_task": {"notebook_path": "/drill", "base_parameters": {"duration": "{{ dag_run.conf.get('duration', 20) }}"}},
    }

    class _Marked:
        def execute(self, context):
            conf = context["dag_run"].conf or {}
            _mark(conf["marks"], ev="attempt-start", t=context["ti"].try_number, pid=os.getpid(), done=0)
            result = super().execute(context)
            _mark(conf["marks"], ev="attempt-end", t=context["ti"].try_number)
            return result

    class DrillResumableJob(_Marked, ResumableDatabricksSubmitRunOperator):
        pass

    class DrillStockJob(_Marked, DatabricksSubmitRunOperator):
        pass

    for _retries in range(MAX_RETRIES + 1):
        for _dag_id, _cls in (("resilience_drill_job", DrillResumableJob), ("resilience_drill_job_stock", DrillStockJob)):
            with DAG(f"{_dag_id}{_suffix(_retries)}", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
                     catchup=False, tags=["resilience-drill"], max_active_runs=64,
                     default_args={"retries": _retries, "retry_delay": timedelta(seconds=2)}):
                _cls(task_id="work", json=_JSON, polling_period_seconds=1)
