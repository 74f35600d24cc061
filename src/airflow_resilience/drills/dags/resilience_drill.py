"""The drill DAGs (deployed by ``airflow resilience drill``; not imported by the package).

``resilience_drill_load``: one task that works through ``items`` items of ``seconds`` each. With the run
conf ``checkpoint`` true it uses ``Checkpoint.iterate`` (what a user of airflow-resilience writes), else
a plain loop (what a stock Airflow user has). ``resilience_drill_job``: one Databricks run on the loopback
Jobs API server, through the resumable operator (``resumable`` true) or the provider's own.

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


def _mark(path: str, **event) -> None:
    event.setdefault("at", time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


with DAG("resilience_drill_load", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         tags=["resilience-drill"], max_active_runs=64):

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def work():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        marks, t = conf["marks"], ctx["ti"].try_number
        items, seconds = int(conf.get("items", 30)), float(conf.get("seconds", 1.0))
        if conf.get("checkpoint"):
            from airflow_resilience import Checkpoint

            ckpt = Checkpoint.current()
            _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=ckpt.done_items("items"))
            loop = ckpt.iterate(range(items), key="items")
        else:
            _mark(marks, ev="attempt-start", t=t, pid=os.getpid(), done=0)
            loop = iter(range(items))
        for i in loop:
            time.sleep(seconds)
            _mark(marks, ev="item-end", t=t, i=i)
        _mark(marks, ev="attempt-end", t=t)
        return items

    work()


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

    for _dag_id, _cls in (("resilience_drill_job", DrillResumableJob), ("resilience_drill_job_stock", DrillStockJob)):
        with DAG(_dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
                 tags=["resilience-drill"], max_active_runs=64,
                 default_args={"retries": 1, "retry_delay": timedelta(seconds=2)}):
            _cls(task_id="work", json=_JSON, polling_period_seconds=1)
