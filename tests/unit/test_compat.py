"""Each private Airflow name in ``airflow_resilience.airflow.compat`` against the installed Airflow.

A failure here means the host changed something the package relies on: the message names it and the
Airflow version, so the compatibility matrix (docs/compatibility.md) can say what broke.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
from importlib.metadata import version

import pytest

from airflow_resilience.airflow import compat

AIRFLOW = version("apache-airflow")


def _fields(cls) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    for attr in ("model_fields", "__annotations__"):
        found = getattr(cls, attr, None)
        if found:
            return set(found)
    return set(inspect.signature(cls).parameters)


def test_task_scope_has_the_task_instance_key_fields() -> None:
    fields = _fields(compat.TaskScope)
    assert {"dag_id", "run_id", "task_id", "map_index"} <= fields, f"Airflow {AIRFLOW}: TaskScope fields are {fields}"
    scope = compat.TaskScope(dag_id="d", run_id="r", task_id="t", map_index=-1)
    assert (scope.dag_id, scope.run_id, scope.task_id, scope.map_index) == ("d", "r", "t", -1)


def test_supervisor_comms_is_where_the_task_runner_keeps_it() -> None:
    from airflow.sdk.execution_time import task_runner

    # Declared at module level and set only inside a task runner.
    declared = "SUPERVISOR_COMMS" in getattr(task_runner, "__annotations__", {}) or hasattr(task_runner, "SUPERVISOR_COMMS")
    assert declared, f"Airflow {AIRFLOW}: task_runner.SUPERVISOR_COMMS is gone"
    task_runner.SUPERVISOR_COMMS = marker = object()
    try:
        assert compat.supervisor_comms() is marker
    finally:
        del task_runner.SUPERVISOR_COMMS


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("get", {"ti_id", "key"}), ("set", {"ti_id", "key", "value", "expires_at"}), ("delete", {"ti_id", "key"}),
     ("error", {"error", "detail"})],
)
def test_state_store_messages_take_what_we_send(kind: str, fields: set[str]) -> None:
    cls = compat.comms_messages()[kind]
    have = _fields(cls)
    assert fields <= have, f"Airflow {AIRFLOW}: {cls.__name__} fields are {sorted(have)}, we use {sorted(fields)}"


def test_supervisor_modules_exist() -> None:
    import importlib

    for name in compat.SUPERVISOR_MODULES:
        importlib.import_module(name)  # a renamed module would make a drain interrupt a supervisor request


def test_stats_modules_exist_and_core_stats_has_the_calls_we_make() -> None:
    import importlib

    for name in compat.STATS_MODULES:
        module = importlib.import_module(name)
        assert hasattr(module, "_factory"), f"Airflow {AIRFLOW}: {name} has no _factory (how we tell it is set up)"
    stats = compat.core_stats()
    for call in ("incr", "timing", "gauge", "initialize"):
        assert callable(getattr(stats, call, None)), f"Airflow {AIRFLOW}: core Stats has no {call}()"


def test_the_scheduler_still_writes_the_state_attribute_message() -> None:
    """The text we parse must be in the scheduler's source, with the placeholder where we read the state."""
    import airflow.jobs.scheduler_job_runner as runner

    source = pathlib.Path(runner.__file__).read_text()
    assert "but the task instance's state attribute is %s" in source, (
        f"Airflow {AIRFLOW}: the scheduler no longer says 'state attribute is <state>'; a user's clear of a "
        "running task would no longer be told apart from a lost worker"
    )
    message = ("Executor CeleryExecutor reported that the task instance <TaskInstance: d.t r [running]> finished "
               "with state failed, but the task instance's state attribute is restarting. ")
    assert compat.reported_state_attribute(message) == "restarting"
    assert compat.reported_state_attribute("some other error") is None
    assert compat.reported_state_attribute(None) is None


def test_the_execution_api_state_route_is_the_one_we_watch() -> None:
    import airflow.api_fastapi.app as api_app
    from airflow.api_fastapi.execution_api import routes
    from airflow.api_fastapi.execution_api.routes import task_instances

    state = [r for r in task_instances.router.routes if getattr(r, "path", "") == "/{task_instance_id}/state"]
    assert state and "PATCH" in state[0].methods, f"Airflow {AIRFLOW}: no PATCH /{{task_instance_id}}/state route"
    assert 'prefix="/task-instances"' in pathlib.Path(routes.__file__).read_text(), f"Airflow {AIRFLOW}: prefix moved"
    assert '"/execution"' in pathlib.Path(api_app.__file__).read_text(), f"Airflow {AIRFLOW}: execution API mount moved"
    assert compat.STATE_PATH.match("/execution/task-instances/0196b5ec-8f1c-7cc5-9a66-6b6c3d7b9a01/state")
    assert not compat.STATE_PATH.match("/execution/task-instances/0196b5ec-8f1c-7cc5-9a66-6b6c3d7b9a01/heartbeat")


def test_databricks_deferrable_helper() -> None:
    pytest.importorskip("airflow.providers.databricks")
    helper = compat.databricks_deferrable_execution()
    params = list(inspect.signature(helper).parameters)
    assert params[:4] == ["operator", "hook", "log", "context"], f"the Databricks helper takes {params}"
