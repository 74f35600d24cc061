"""Test tools shipped to users: a real Airflow for integration tests, in-memory checkpoints for unit tests.

* :class:`AirflowEnvironment` — api-server, scheduler, dag-processor and triggerer of the installed
  Airflow in a temporary home, on PostgreSQL when reachable and SQLite otherwise; trigger, clear, wait,
  read try history, find and signal the task runner and supervisor of a running task. With
  ``executor="celery"``: CeleryExecutor on Redis with several ``airflow celery worker`` "nodes" to kill.
* :class:`CheckpointEnvironment` — in-memory task state store with Airflow's fencing rules.
* the pytest plugin (opt-in: ``pytest_plugins = ["airflow_resilience.testing.pytest_plugin"]`` in your root
  ``conftest.py``, or ``pytest -p airflow_resilience.testing.pytest_plugin``): fixtures ``airflow_env``
  (session-scoped) and ``checkpoint_env``; override ``airflow_dags`` / ``airflow_config`` in your
  ``conftest.py``.

Not part of the runtime: it needs the ``testing`` extra (``pip install 'airflow-resilience[testing]'``).
Without it, importing this package (or any module in it) raises
:class:`~airflow_resilience.extras.MissingExtraError`, an ``ImportError`` naming the extra.
"""

from __future__ import annotations

from airflow_resilience.extras import require as _require

_require("testing", "airflow_resilience.testing")

from airflow_resilience.testing.harness import (  # noqa: E402 - after the extra's check
    AirflowEnvironment,
    EnvironmentUnavailable,
    TaskInstanceRow,
    TaskProcesses,
    postgres_reachable,
    redis_reachable,
)
from airflow_resilience.testing.memory import CheckpointEnvironment  # noqa: E402

__all__ = [
    "AirflowEnvironment",
    "CheckpointEnvironment",
    "EnvironmentUnavailable",
    "TaskInstanceRow",
    "TaskProcesses",
    "postgres_reachable",
    "redis_reachable",
]
