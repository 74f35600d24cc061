"""The whole suite: which PostgreSQL and Redis the real-Airflow tests use, and a timeout on each of them.

At the top of the run one line per service says what the session uses (a private server started from the
installed binaries, an explicit address, or the server on the standard port) or, outside CI, what the
suite does without it. With ``CI=true`` a missing service stops the run at once with a line naming it
(never a skip, never a silent SQLite fallback). See :mod:`airflow_resilience.testing.services`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_resilience.testing import services

#: The package's pytest plugin is opt-in (no ``pytest11`` entry point): this suite loads it here, which gives
#: every test the ``airflow_env``, ``airflow_dags``, ``airflow_config``, ``airflow_database`` and
#: ``checkpoint_env`` fixtures (tests/airflow/conftest.py overrides the ones it configures).
pytest_plugins = ["airflow_resilience.testing.pytest_plugin"]

#: Per real-Airflow test (setup included: the first test of a module boots its Airflow). A hang fails that
#: one test, not the whole run. A test that needs longer says so with its own ``@pytest.mark.timeout``.
AIRFLOW_TEST_TIMEOUT = 600

AIRFLOW_TESTS = Path(__file__).parent / "airflow"


def pytest_report_header(config: pytest.Config) -> list[str]:
    from airflow_resilience.testing.kube.build import cached, version

    built = cached()
    kube = (f"Kubernetes {version()}: a control plane from the cached build in {built} (started by the suite)"
            if built else f"Kubernetes {version()}: no cached build (make k8s); the KubernetesExecutor tests "
            + ("fail" if services.in_ci() else "build it or skip"))
    return [*(f"airflow-resilience services: {c.line()}" for c in services.session_plan()), f"airflow-resilience services: {kube}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = [item for item in items if AIRFLOW_TESTS in Path(item.path).parents]
    for item in real:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(AIRFLOW_TEST_TIMEOUT))
    if not real:
        return  # the unit tests need no service
    choices = services.session_plan()
    try:
        services.require(choices)
    except services.ServiceMissing as exc:
        pytest.exit(f"airflow-resilience tests: {exc}", returncode=3)
    for choice in choices:
        if not choice.available:
            print(f"\n{services.fallback_line(choice)}")
