"""Hosting an attempt: the :class:`~airflow_resilience.context.AttemptRuntime` the task runner hands the core.

The plugin's task-runner listener calls :func:`begin_attempt` in ``on_task_instance_running`` (before
``pre_execute`` and before Airflow copies the context to run ``execute``) and :func:`end_attempt` after its
end-of-task work. Building the runtime reads and sends nothing: the checkpoint, the watermark backend and
the settings are made on first use.
"""

from __future__ import annotations

from typing import Any

from airflow_resilience import context
from airflow_resilience.airflow import runtime


class _LazyWatermarkBackend:
    """The attempt's watermark backend factory, imported on first use: a task that never opens a watermark
    does not import the watermark package at its start (part of every attempt's start-up time)."""

    def __init__(self) -> None:
        self._factory: Any = None

    def __call__(self) -> Any:
        if self._factory is None:
            from airflow_resilience.airflow import watermark_client

            self._factory = watermark_client.BackendFactory()
        return self._factory()


def _wait_settings() -> tuple[float, float]:
    from airflow_resilience.airflow import watermark_client

    return watermark_client.wait_settings()


def runtime_for(ti: Any) -> context.AttemptRuntime:
    """The runtime of the attempt of ``ti``."""
    return context.AttemptRuntime(
        open_checkpoint=runtime.checkpoint_for_running_task,
        watermark_backend=_LazyWatermarkBackend(),
        watermark_wait=_wait_settings,
        label=f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} try {getattr(ti, 'try_number', '?')}",
    )


def begin_attempt(ti: Any) -> None:
    context.begin(runtime_for(ti))


def end_attempt() -> None:
    context.end()
