"""KubernetesExecutor acceptance DAGs (each task runs in its own pod on the test cluster's node agents).

* ``kube_steps``: a checkpointed task of N steps, ``retries=0``;
* ``kube_oom``: the same, whose first try allocates past the pod's 768Mi memory limit at step ``oom_at``;
* ``kube_app_error``: user code that fails, ``retries=1``.

Marks (JSON lines, file named by the run conf ``marks``) carry the pod (``HOSTNAME``) and the try."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum
from kubernetes.client import models as k8s

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Checkpoint

LIMITED = {
    "pod_override": k8s.V1Pod(
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", resources=k8s.V1ResourceRequirements(limits={"memory": "768Mi"}))])
    )
}


def _steps(oom_at: int | None = None):
    ctx = get_current_context()
    conf = ctx["dag_run"].conf or {}
    marks, t = conf["marks"], ctx["ti"].try_number
    ckpt = Checkpoint.current()
    mark(marks, ev="attempt-start", t=t, pod=os.environ.get("HOSTNAME"), done=ckpt.done_items("items"))
    for i in ckpt.iterate(range(int(conf.get("steps", 60))), key="items"):
        mark(marks, ev="item-start", t=t, i=i, pod=os.environ.get("HOSTNAME"))
        if oom_at is not None and t == 1 and i == oom_at:
            hog = [bytearray(32 * 2**20) for _ in range(64)]  # 2 GiB, far past the limit
            mark(marks, ev="not-killed", t=t, n=len(hog))
        time.sleep(float(conf.get("delay", 0.5)))
        mark(marks, ev="item-end", t=t, i=i, pod=os.environ.get("HOSTNAME"))
    mark(marks, ev="attempt-end", t=t)
    return ckpt.done_items("items")


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def kube_steps():
    @task(retries=0)
    def work():
        return _steps()

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def kube_oom():
    @task(retries=0, executor_config=LIMITED)
    def work():
        ctx = get_current_context()
        return _steps(oom_at=int((ctx["dag_run"].conf or {}).get("oom_at", 3)))

    work()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def kube_app_error():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def work():
        ctx = get_current_context()
        mark(ctx["dag_run"].conf["marks"], ev="attempt-start", t=ctx["ti"].try_number, pod=os.environ.get("HOSTNAME"))
        raise ValueError("user code failed")

    work()


kube_steps()
kube_oom()
kube_app_error()
