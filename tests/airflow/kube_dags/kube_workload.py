"""A workload pod run by ResumablePodOperator (retries=0). The workload sleeps ``seconds`` (marks say which
pod ran, from its HOSTNAME) and writes its result to its termination message."""

from __future__ import annotations

import sys

import pendulum

from airflow.sdk import dag

from airflow_resilience.providers.kubernetes import ResumablePodOperator

WORKLOAD = r"""
import json, os, sys, time
marks, seconds = sys.argv[1], float(sys.argv[2])
def mark(**e):
    e["at"] = time.time()
    with open(marks, "a") as fh:
        fh.write(json.dumps(e) + "\n")
mark(ev="workload-start", pod=os.environ["HOSTNAME"])
time.sleep(seconds)
with open("/dev/termination-log", "w") as fh:
    json.dump({"pod": os.environ["HOSTNAME"], "answer": 42}, fh)
mark(ev="workload-end", pod=os.environ["HOSTNAME"])
"""


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def kube_workload():
    ResumablePodOperator(
        task_id="job",
        retries=0,
        image="local/workload:1",
        cmds=[sys.executable, "-c", WORKLOAD],
        arguments=["{{ dag_run.conf['marks'] }}", "{{ dag_run.conf.get('seconds', 20) }}"],
        namespace="airflow",
        in_cluster=True,
        poll_interval=1.0,
    )


kube_workload()
