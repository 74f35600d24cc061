"""Benchmark DAGs: a Databricks run on the loopback Jobs API server, the provider's operator and ours.

Run conf: ``marks`` (JSON-lines file), ``duration`` (seconds the run takes), ``pause_at`` (in try 1, wait
at ``after_submit`` or ``before_defer`` until killed), ``deferrable``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import DAG

from airflow_resilience.providers.databricks import ResumableDatabricksSubmitRunOperator


def point(context, ev, **extra):
    conf = context["dag_run"].conf or {}
    t = context["ti"].try_number
    fd = os.open(conf["marks"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps({"t": t, "ev": ev, "at": time.time(), **extra}) + "\n").encode())
    os.close(fd)
    if conf.get("pause_at") == ev and t == 1:
        parent = os.getppid()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.05)


class Stock(DatabricksSubmitRunOperator):
    def execute(self, context):
        point(context, "attempt-start")
        return super().execute(context)

    def submit_job(self, context):
        run_id = super().submit_job(context)
        point(context, "after_submit", run_id=run_id)
        return run_id

    def defer(self, **kwargs):
        point(self._context, "before_defer", run_id=self.run_id)
        return super().defer(**kwargs)

    def _prepare_submit_json(self, context):
        self._context = context
        return super()._prepare_submit_json(context)


class Ours(ResumableDatabricksSubmitRunOperator):
    def execute(self, context):
        point(context, "attempt-start")
        return super().execute(context)

    def _databricks_submit(self, context, token):
        run_id = super()._databricks_submit(context, token)
        point(context, "after_submit", run_id=run_id)
        return run_id

    def before_defer(self, context):
        point(context, "before_defer", run_id=self.run_id)


JSON = {
    "run_name": "{{ run_id }}",
    "notebook_task": {"notebook_path": "/bench", "base_parameters": {"duration": "{{ dag_run.conf['duration'] }}"}},
}

for cls in (Stock, Ours):
    for deferrable in (False, True):
        dag_id = f"bench_ops_{cls.__name__.lower()}{'_deferrable' if deferrable else ''}"
        with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
                 default_args={"retries": 1, "retry_delay": timedelta(seconds=2)}):
            cls(task_id="job", json=JSON, polling_period_seconds=2, deferrable=deferrable)
