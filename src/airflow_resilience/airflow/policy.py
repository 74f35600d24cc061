"""Cluster policy (``airflow.policy`` entry point): make tasks infrastructure-aware.

``task_policy`` runs wherever a DAG file is parsed — in the dag-processor (what the scheduler sees) and in
the task runner (what executes) — and, when ``[resilience] enabled`` (and, with ``selective_enable``, for
DAGs tagged with ``enable_tag``):

* wraps the task's ``retry_policy`` in :class:`InfraRetryPolicy` (a user's own policy is kept as
  ``then=``; an ``InfraRetryPolicy`` given by the author keeps its per-task budget);
* installs the attempt-start hook (``pre_execute``) and the SIGTERM drain (``execute`` wrapper).

It never changes ``retries``, ``retry_delay`` or anything else the scheduler reads: the serialized DAG
(what the dag-processor writes, what the UI's "Try N of M" shows) is the user's. Infrastructure tries are
granted one at a time where a failure is decided — by the failure gate on the API server and the
scheduler-side listener — by raising that task instance's ``max_tries`` by one. So a component without the
package, or with it switched off, can never hand an application failure an extra try: at worst it grants
nothing, which is stock Airflow.

Mapped tasks are left as they are (see the docs' known limitations).
"""

from __future__ import annotations

import copy
import logging

from airflow.policies import hookimpl

log = logging.getLogger(__name__)

MARK = "_airflow_resilience_applied"


@hookimpl
def task_policy(task) -> None:
    from airflow_resilience.airflow.runtime import settings

    from airflow.sdk.bases.operator import BaseOperator

    from airflow_resilience.config import applies_to

    cfg = settings()
    if getattr(task, MARK, False):
        return
    if not isinstance(task, BaseOperator):  # mapped operators (.expand()) are left as stock Airflow
        return
    dag = getattr(task, "dag", None)
    if not applies_to(cfg, getattr(dag, "tags", None) if dag is not None else None):
        return
    apply(task)


@hookimpl
def pod_mutation_hook(pod) -> None:
    """KubernetesExecutor: the pod of the try after a node loss avoids that node (see ``airflow/kubernetes.py``)."""
    from airflow_resilience.airflow.runtime import settings

    if not settings().enabled:
        return
    from airflow_resilience.airflow.kubernetes import avoid_lost_node

    avoid_lost_node(pod)


def apply(task) -> None:
    from airflow.sdk.bases.operator import BaseOperator

    from airflow_resilience.airflow.execution import on_attempt_start, wrap_execute
    from airflow_resilience.airflow.retry_policy import InfraRetryPolicy

    user_policy = getattr(task, "retry_policy", None)
    if isinstance(user_policy, InfraRetryPolicy):
        # One policy object may be shared by many tasks (default_args): bind a copy per task.
        policy = copy.copy(user_policy)
    else:
        policy = InfraRetryPolicy(then=user_policy)
    policy.app_retries = int(task.retries or 0)
    task.retry_policy = policy

    cls_pre_execute = type(task).pre_execute
    overridden = cls_pre_execute is not BaseOperator.pre_execute

    def pre_execute(context):
        # The runner works on a prepared copy of the task (templates rendered): use it.
        target = getattr(context["ti"], "task", None) or task
        on_attempt_start(target, context)
        if overridden:
            cls_pre_execute(target, context)

    task.pre_execute = pre_execute
    wrap_execute(task)
    setattr(task, MARK, True)
