"""Every private Airflow name the package uses, and every parse of Airflow's text, in one place.

Airflow 3.3 has no public API for these; each is used where no public one does the job, and each has a
test in ``tests/unit/test_compat.py`` that fails loudly (naming the name and the Airflow version) when the
installed Airflow changes it. Public Airflow imports (``airflow.sdk``, ``airflow.models``,
``airflow.state.get_state_backend``...) stay where they are used.

Names are resolved on first use, never at import: this module is imported by processes (the API server's
failure gate, the scheduler listener) that must not pay for, or break on, a name they never touch.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# ------------------------------------------------------------------------------------------ task scope
# The key of a task instance's state-store rows on the server side (``airflow.state`` backends take it).


def __getattr__(name: str) -> Any:
    if name == "TaskScope":
        from airflow._shared.state import TaskScope  # private: the shared state library's scope type

        return TaskScope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- the task's supervisor link
def supervisor_comms() -> Any:
    """The task runner's channel to its supervisor (``SUPERVISOR_COMMS``): what ``task_state_store`` uses
    under the hood; we send the same messages to read the store's error answers (fencing) ourselves."""
    from airflow.sdk.execution_time import task_runner

    return task_runner.SUPERVISOR_COMMS


@functools.cache
def comms_messages() -> dict[str, Any]:
    """The supervisor messages of the task state store, and its error answer (resolved once: every
    checkpoint write asks)."""
    from airflow.sdk.execution_time import comms

    return {
        "get": comms.GetTaskStateStore,
        "set": comms.SetTaskStateStore,
        "delete": comms.DeleteTaskStateStore,
        "error": comms.ErrorResponse,
    }


#: Modules in which a SIGTERM must not raise, wherever they are on the task's stack: the supervisor
#: request/response channel, the supervisor itself, the execution API client.
SUPERVISOR_MODULES = (
    "airflow.sdk.execution_time.comms",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.api",
)

# --------------------------------------------------------------------------------------------- metrics
#: Airflow has two copies of its Stats module: the Task SDK's (set up by the task runner) and core's (set
#: up by the scheduler, the API server, the triggerer, the dag processor, executors).
STATS_MODULES = (
    "airflow.sdk._shared.observability.metrics.stats",
    "airflow._shared.observability.metrics.stats",
)


def core_stats() -> Any:
    from airflow._shared.observability.metrics import stats

    return stats


# ---------------------------------------------------------------------------------------- Airflow's text
#: The scheduler's message when an executor reports a try finished while the task instance says otherwise
#: (``scheduler_job_runner``: "... but the task instance's state attribute is <state>"). ``restarting``
#: there means a user cleared the running task instance.
_STATE_ATTRIBUTE = re.compile(r"state attribute is (\w+)")


def reported_state_attribute(error: Any) -> str | None:
    """The state named in the scheduler's "state attribute is X" message, or None."""
    seen = _STATE_ATTRIBUTE.search(str(error or ""))
    return seen.group(1) if seen else None


#: The execution API route by which a worker's supervisor reports the end of a try
#: (``PATCH /execution/task-instances/{id}/state``).
STATE_PATH = re.compile(r"^/execution/task-instances/([0-9a-fA-F-]{32,36})/state$")

# --------------------------------------------------------------------------------------------- providers


def databricks_deferrable_execution() -> Any:
    """The Databricks provider's private helper that defers a run operator on its run id (what its own
    operators call after submitting)."""
    from airflow.providers.databricks.operators import databricks

    return databricks._handle_deferrable_databricks_operator_execution
