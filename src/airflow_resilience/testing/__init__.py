"""Test tools shipped to users: a real Airflow for integration tests, in-memory checkpoints for unit tests.

* :class:`AirflowEnvironment` — api-server, scheduler, dag-processor and triggerer of the installed
  Airflow in a temporary home, on PostgreSQL when reachable and SQLite otherwise; trigger, clear, wait,
  read try history, find and signal the task runner and supervisor of a running task. With
  ``executor="celery"``: CeleryExecutor on Redis with several ``airflow celery worker`` "nodes" to kill.
* :class:`CheckpointEnvironment` — in-memory task state store with Airflow's fencing rules.
* the pytest plugin (registered automatically): fixtures ``airflow_env`` (session-scoped) and
  ``checkpoint_env``; override ``airflow_dags`` / ``airflow_config`` in your ``conftest.py``.
"""

from __future__ import annotations

from airflow_resilience.testing.harness import (
    AirflowEnvironment,
    EnvironmentUnavailable,
    TaskInstanceRow,
    TaskProcesses,
    postgres_reachable,
    redis_reachable,
)
from airflow_resilience.testing.memory import CheckpointEnvironment

__all__ = [
    "AirflowEnvironment",
    "CheckpointEnvironment",
    "EnvironmentUnavailable",
    "TaskInstanceRow",
    "TaskProcesses",
    "postgres_reachable",
    "redis_reachable",
]
