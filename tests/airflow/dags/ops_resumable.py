"""Test DAGs for resumable operators: Databricks runs on the loopback Jobs API server, a three-phase
ResumableOperator, and the generic ExternalJob adapter.

Each operator writes progress marks (JSON lines) to the file named by the run conf ``marks`` and, in try 1
only, pauses at the point named by the run conf ``pause_at`` until the test kills it (or its supervisor
dies: an orphaned runner then goes on, as it would on a real node, and fails at its next supervisor call).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum
from resilience_marks import mark

from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import DAG

from airflow_resilience import ExternalJobOperator, ResumableOperator
from airflow_resilience.providers.databricks import (
    ResumableDatabricksRunNowOperator,
    ResumableDatabricksSubmitRunOperator,
)
from airflow_resilience.resumable import JobStatus

START = pendulum.datetime(2024, 1, 1)
NOTEBOOK = {
    "notebook_path": "/loopback",
    "base_parameters": {"duration": "{{ dag_run.conf.get('duration', 6) }}", "fail": "{{ dag_run.conf.get('fail', 'false') }}"},
}


def point(context, ev: str, **extra) -> None:
    """Mark ``ev``; in try 1, pause there when the run conf asks for it."""
    conf = context["dag_run"].conf or {}
    t = context["ti"].try_number
    mark(conf["marks"], t=t, ev=ev, pid=os.getpid(), **extra)
    if conf.get("pause_at") == ev and t == 1:
        parent = os.getppid()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.05)
        mark(conf["marks"], t=t, ev=f"{ev}-unpaused", pid=os.getpid(), orphan=os.getppid() != parent)


class SeamsMixin:
    """Kill points around the provider's calls (shared by ours and the stock operator)."""

    def poll_until_complete(self, external_id, context):
        point(context, "polling", run_id=external_id)
        return super().poll_until_complete(external_id, context)

    def get_job_result(self, external_id, context):
        point(context, "finished", run_id=external_id)
        return super().get_job_result(external_id, context)

    def execute(self, context):
        point(context, "attempt-start")
        result = super().execute(context)
        return result


class SubmitSeams(SeamsMixin):
    """Kill points around our operators' submit request."""

    def _databricks_submit(self, context, token):
        point(context, "before_submit")
        run_id = super()._databricks_submit(context, token)
        point(context, "after_submit", run_id=run_id)
        return run_id


class SubmitRun(SubmitSeams, ResumableDatabricksSubmitRunOperator):
    def before_defer(self, context):
        point(context, "before_defer", run_id=self.run_id)

    def execute_complete(self, context, event):
        point(context, "complete", run_id=event.get("run_id"))
        return super().execute_complete(context, event)


class StockSubmitRun(SeamsMixin, DatabricksSubmitRunOperator):
    """The provider's operator as shipped (its ResumableJobMixin path), with the same kill points."""

    def submit_job(self, context):
        point(context, "before_submit")
        run_id = super().submit_job(context)
        point(context, "after_submit", run_id=run_id)
        return run_id


class RunNow(SubmitSeams, ResumableDatabricksRunNowOperator):
    pass


class ThreePhase(ResumableOperator):
    """provision -> run (steps) -> cleanup, a resume point before each phase."""

    def execute(self, context):
        point(context, "provision")
        cluster = f"cluster-{context['ti'].try_number}-{os.getpid()}"
        self.checkpoint(next_method="run", cluster=cluster, steps=int(context["dag_run"].conf.get("steps", 10)))
        return self.run(context, cluster=cluster, steps=int(context["dag_run"].conf.get("steps", 10)))

    def run(self, context, cluster, steps):
        point(context, "run", cluster=cluster)
        conf = context["dag_run"].conf or {}
        for i in range(steps):
            time.sleep(0.2)
            mark(conf["marks"], t=context["ti"].try_number, ev="run-step", i=i)
        if conf.get("fail_in_run") and context["ti"].try_number == 1:
            raise RuntimeError("application error in run (test)")
        self.checkpoint(next_method="cleanup", cluster=cluster, result={"rows": steps * 10})
        return self.cleanup(context, cluster=cluster, result={"rows": steps * 10})

    def cleanup(self, context, cluster, result):
        point(context, "cleanup", cluster=cluster)
        return {**result, "cluster": cluster}


class LoopbackJob:
    """A generic external job on the loopback server: submit with a client token, find by token."""

    dedupes_by_token = False

    def __init__(self, base_url: str, name: str, duration: float) -> None:
        import requests

        self.http = requests.Session()
        self.base = base_url.rstrip("/") + "/api/2.2/jobs/"
        self.name, self.duration = name, duration

    def submit(self, token):
        body = {"run_name": self.name, "idempotency_token": token,
                "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "/x", "base_parameters": {"duration": str(self.duration)}}}]}
        return self.http.post(self.base + "runs/submit", json=body, timeout=10).json()["run_id"]

    def find(self, token):
        runs = self.http.get(self.base + "runs/list", params={"idempotency_token": token}, timeout=10).json()["runs"]
        return runs[0]["run_id"] if runs else None

    def status(self, job_id):
        state = self.http.get(self.base + "runs/get", params={"run_id": job_id}, timeout=10).json()["state"]
        if state["life_cycle_state"] != "TERMINATED":
            return JobStatus("running")
        if state.get("result_state") == "SUCCESS":
            return JobStatus("succeeded", result={"run_id": job_id})
        return JobStatus("failed", message=state.get("state_message", ""))

    def cancel(self, job_id):
        self.http.post(self.base + "runs/cancel", json={"run_id": job_id}, timeout=10)


class GenericJob(ExternalJobOperator):
    def job(self, context):
        name = context["run_id"] if context else "cancel"
        duration = float((context["dag_run"].conf or {}).get("duration", 4)) if context else 0
        return _Seamed(LoopbackJob(os.environ["LOOPBACK_JOBS_URL"], name, duration), context)


class _Seamed:
    def __init__(self, job, context):
        self.job, self.context = job, context
        self.dedupes_by_token = job.dedupes_by_token

    def submit(self, token):
        job_id = self.job.submit(token)
        point(self.context, "after_submit", run_id=job_id)
        return job_id

    def find(self, token):
        return self.job.find(token)

    def status(self, job_id):
        return self.job.status(job_id)

    def cancel(self, job_id):
        return self.job.cancel(job_id)


class SlowAcknowledge(ResumableOperator):
    """submit_once with find=None: the external system creates the job, then its answer takes ``ack_delay``
    seconds to come back — the window in which an eviction's SIGTERM arrives in the test."""

    def execute(self, context):
        conf = context["dag_run"].conf or {}
        point(context, "attempt-start")
        job = LoopbackJob(os.environ["LOOPBACK_JOBS_URL"], context["run_id"], float(conf.get("duration", 3)))

        def submit(token):
            job_id = job.submit(token)
            point(context, "after_submit", run_id=job_id)  # the job exists now
            time.sleep(float(conf.get("ack_delay", 3)))
            return job_id

        run_id = self.submit_once(context, submit, None)
        self.checkpoint(next_method="wait", run_id=run_id)
        return self.wait(context, run_id=run_id)

    def wait(self, context, run_id):
        point(context, "waiting", run_id=run_id)
        job = LoopbackJob(os.environ["LOOPBACK_JOBS_URL"], context["run_id"], 0)
        while not (status := job.status(run_id)).finished:
            time.sleep(0.3)
        if status.state != "succeeded":
            raise RuntimeError(f"job {run_id} failed: {status.message}")
        return status.result


def _dag(dag_id: str, **default_args) -> DAG:
    return DAG(
        dag_id, schedule=None, start_date=START, catchup=False, tags=["resilience-test"],
        default_args={"retries": 0, "retry_delay": timedelta(seconds=1), **default_args},
    )


with _dag("ops_submit"):
    SubmitRun(task_id="job", json={"run_name": "{{ run_id }}", "notebook_task": NOTEBOOK}, polling_period_seconds=1)

with _dag("ops_submit_deferrable"):
    SubmitRun(task_id="job", json={"run_name": "{{ run_id }}", "notebook_task": NOTEBOOK},
              polling_period_seconds=1, deferrable=True)

with _dag("ops_stock_submit"):
    StockSubmitRun(task_id="job", json={"run_name": "{{ run_id }}", "notebook_task": NOTEBOOK}, polling_period_seconds=1)

with _dag("ops_run_now"):
    RunNow(task_id="job", job_id=77, notebook_params={"duration": "{{ dag_run.conf.get('duration', 6) }}"},
           polling_period_seconds=1, json={"run_name": "{{ run_id }}"})

with _dag("ops_three_phase", retries=1):
    ThreePhase(task_id="job")

with _dag("ops_submit_window"):
    SlowAcknowledge(task_id="job")

with _dag("ops_generic"):
    GenericJob(task_id="job", poll_interval=0.5)
