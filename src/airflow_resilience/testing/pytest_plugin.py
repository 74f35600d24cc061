"""pytest plugin: fixtures for testing DAGs on a real Airflow. Opt-in: it is not registered by installing
the package (generic fixture names such as ``airflow_env`` would otherwise appear in every environment that
has pytest). Load it in your root ``conftest.py``::

    pytest_plugins = ["airflow_resilience.testing.pytest_plugin"]

or on the command line: ``pytest -p airflow_resilience.testing.pytest_plugin``. It needs the ``testing``
extra (``pip install 'airflow-resilience[testing]'``).

Override in your ``conftest.py``::

    @pytest.fixture(scope="session")
    def airflow_dags():
        return [Path(__file__).parent / "dags"]

Then use ``airflow_env`` in tests. It is booted once per test session (a few tens of seconds) and
stopped at the end, with every process it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def airflow_dags() -> list[Path]:
    """DAG files or folders to deploy into the session's Airflow (override in conftest)."""
    return []


@pytest.fixture(scope="session")
def airflow_config() -> dict[str, str]:
    """Extra ``AIRFLOW__SECTION__KEY`` settings for the session's Airflow (override in conftest)."""
    return {}


@pytest.fixture(scope="session")
def airflow_database() -> str | None:
    """``"postgres"``, ``"sqlite"`` or ``None`` (PostgreSQL when reachable); override to force one."""
    return None


@pytest.fixture(scope="session")
def airflow_env(airflow_dags: list[Path], airflow_config: dict[str, str], airflow_database: str | None) -> Iterator[Any]:
    from airflow_resilience.testing.harness import AirflowEnvironment

    env = AirflowEnvironment.create(dags=airflow_dags, config=airflow_config, database=airflow_database)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def checkpoint_env() -> Any:
    """A fresh in-memory task instance for unit tests of code that calls ``Checkpoint.current()``."""
    from airflow_resilience.testing.memory import CheckpointEnvironment

    return CheckpointEnvironment()
