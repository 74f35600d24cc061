"""Cluster policy (``airflow.policy`` entry point): make every task infrastructure-aware.

``task_policy`` runs wherever a DAG file is parsed — in the dag-processor (what the scheduler sees) and in
the task runner (what executes) — and, when ``[resilience] enabled``:

* wraps the task's ``retry_policy`` in :class:`InfraRetryPolicy` (a user's own policy is kept as
  ``then=``; an ``InfraRetryPolicy`` given by the author keeps its per-task budget);
* raises ``retries`` by ``infra_retries + 1`` so Airflow itself starts a new attempt after an
  infrastructure failure, even for ``retries=0``; the policy takes those tries back from application
  failures, so ``retries`` stays exactly the application budget. The ``+ 1`` is the try that reports an
  exhausted budget with a message instead of failing silently;
* installs the attempt-start hook (``pre_execute``) and the SIGTERM drain (``execute`` wrapper).

Mapped tasks are left as they are (see the docs' known limitations).
"""

from __future__ import annotations

import copy
import logging
from datetime import timedelta

from airflow.policies import hookimpl

log = logging.getLogger(__name__)

MARK = "_airflow_resilience_applied"


@hookimpl
def task_policy(task) -> None:
    from airflow_resilience.airflow.runtime import settings

    from airflow.sdk.bases.operator import BaseOperator

    cfg = settings()
    if not cfg.enabled or getattr(task, MARK, False):
        return
    if not isinstance(task, BaseOperator):  # mapped operators (.expand()) are left as stock Airflow
        return
    apply(
        task,
        default_infra_retries=cfg.infra_retries,
        default_breaker=cfg.breaker_threshold,
        infra_retry_delay=cfg.infra_retry_delay,
    )


def apply(task, *, default_infra_retries: int, default_breaker: int, infra_retry_delay: float = 2.0) -> None:
    from airflow.sdk.bases.operator import BaseOperator

    from airflow_resilience.airflow.execution import on_attempt_start, wrap_execute
    from airflow_resilience.airflow.retry_policy import InfraRetryPolicy
    from airflow_resilience.budget import BudgetPolicy

    user_policy = getattr(task, "retry_policy", None)
    if isinstance(user_policy, InfraRetryPolicy):
        # One policy object may be shared by many tasks (default_args): bind a copy per task.
        policy = copy.copy(user_policy)
    else:
        policy = InfraRetryPolicy(then=user_policy)
    budget = policy.budget(BudgetPolicy(infra_retries=default_infra_retries, breaker_threshold=default_breaker))
    app_retries = int(task.retries or 0)
    policy.app_retries = app_retries
    task.retry_policy = policy
    if budget.infra_retries > 0:
        task.retries = app_retries + budget.infra_retries + 1
        if not getattr(task, "retry_exponential_backoff", False):
            # Airflow applies the task's retry_delay to every retry it starts, including the ones after a
            # runner or worker death; application retries get the author's delay back from the policy.
            policy.app_retry_delay = task.retry_delay
            task.retry_delay = timedelta(seconds=infra_retry_delay)

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
