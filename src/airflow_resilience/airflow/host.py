"""Hosting an attempt: the :class:`~airflow_resilience.context.AttemptRuntime` the task runner hands the core.

The plugin's task-runner listener calls :func:`begin_attempt` in ``on_task_instance_running`` (before
``pre_execute`` and before Airflow copies the context to run ``execute``) and :func:`end_attempt` after its
end-of-task work. Building the runtime reads and sends nothing: the checkpoint, the watermark backend and
the settings are made on first use.
"""

from __future__ import annotations

from typing import Any

from airflow_resilience import context
from airflow_resilience.airflow import runtime, watermark_client


def runtime_for(ti: Any) -> context.AttemptRuntime:
    """The runtime of the attempt of ``ti``."""
    return context.AttemptRuntime(
        open_checkpoint=runtime.checkpoint_for_running_task,
        watermark_backend=watermark_client.BackendFactory(),
        watermark_wait=watermark_client.wait_settings,
        label=f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} try {getattr(ti, 'try_number', '?')}",
    )


def begin_attempt(ti: Any) -> None:
    context.begin(runtime_for(ti))


def end_attempt() -> None:
    context.end()
