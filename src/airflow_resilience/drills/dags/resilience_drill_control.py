"""The control-plane drill DAGs (deployed by ``airflow resilience drill --chaos`` and the control-plane tests;
not imported by the package). Both have ``retries=0``: a run that ends in success after a disruption spent no
retry of the user's, and one the package could not carry fails (the honest result).

``resilience_drill_control_load``: ``items`` items of ``seconds`` each through ``Checkpoint.iterate``.
``resilience_drill_control_deferred``: one Databricks run on the loopback Jobs API server through the resumable
operator in deferrable mode (the wait is the triggerer's).

Progress marks (JSON lines) go to the file named by the run conf ``marks``, as in ``resilience_drill``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import DAG, get_current_context, task


def _mark(path: str, **event) -> None:
    event.setdefault("at", time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


with DAG("resilience_drill_control_load", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         tags=["resilience-drill"], max_active_runs=64):

    @task(retries=0, retry_delay=timedelta(seconds=2))
    def work():
        from airflow_resilience import Checkpoint

        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        marks, t = conf["marks"], ctx["ti"].try_number
        items, seconds = int(conf.get("items", 20)), float(conf.get("seconds", 0.5))
        ckpt = Checkpoint.current()
        _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=ckpt.done_items("items"))
        for i in ckpt.iterate(range(items), key="items"):
            time.sleep(seconds)
            _mark(marks, ev="item-end", t=t, i=i)
        _mark(marks, ev="attempt-end", t=t)
        return items

    work()


try:
    from airflow_resilience.providers.databricks import ResumableDatabricksSubmitRunOperator
except ImportError:  # the deferred drill needs the Databricks provider
    ResumableDatabricksSubmitRunOperator = None

if ResumableDatabricksSubmitRunOperator is not None:

    class DrillDeferredJob(ResumableDatabricksSubmitRunOperator):
        def execute(self, context):
            conf = context["dag_run"].conf or {}
            _mark(conf["marks"], ev="attempt-start", t=context["ti"].try_number, pid=os.getpid(), done=0)
            return super().execute(context)

        def execute_complete(self, context, event=None):
            result = super().execute_complete(context, event)
            conf = context["dag_run"].conf or {}
            _mark(conf["marks"], ev="attempt-end", t=context["ti"].try_number)
            return result

    with DAG("resilience_drill_control_deferred", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
             catchup=False, tags=["resilience-drill"], max_active_runs=64,
             default_args={"retries": 0, "retry_delay": timedelta(seconds=2)}):
        DrillDeferredJob(
            task_id="work",
            json={"run_name": "{{ run_id }}",
                  "notebook_task": {"notebook_path": "/drill",
                                    "base_parameters": {"duration": "{{ dag_run.conf.get('duration', 20) }}"}}},
            polling_period_seconds=1,
            deferrable=True,
        )
