"""Disruptions of real processes of a running drill: what each kind does, and the waits around it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_resilience.drills.model import TASK


def disrupt(af: Any, kind: str, dag_id: str, run_id: str, grace: float, task_id: str = TASK) -> dict[str, Any]:
    """Inject one disruption into the running task instance (or the deployment); returns what was done."""
    import psutil

    at = time.time()
    if kind in ("eviction", "lost_worker", "oom"):
        procs = af.task_processes(dag_id, run_id, task_id)
        supervisor, runner = psutil.Process(procs.supervisor), psutil.Process(procs.runner)
        if kind == "oom":
            runner.send_signal(signal.SIGKILL)
            return {"kind": kind, "at": at, "target_pid": procs.runner}
        if kind == "lost_worker":
            supervisor.send_signal(signal.SIGKILL)
            return {"kind": kind, "at": at, "target_pid": procs.supervisor}
        # eviction: SIGTERM to the pod's processes' parent, SIGKILL of what still runs after the grace
        supervisor.send_signal(signal.SIGTERM)

        def finish() -> None:
            time.sleep(grace)
            af.end_grace(procs)

        threading.Thread(target=finish, daemon=True, name="drill-grace").start()
        return {"kind": kind, "at": at, "target_pid": procs.supervisor, "grace_s": grace}
    component = {"scheduler_restart": "scheduler", "api_restart": "api-server"}[kind]
    af.stop_component(component, signal.SIGTERM)
    af.start_component(component)
    return {"kind": kind, "at": at, "component": component}


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(f"drill: {what} not seen in {timeout:.0f}s")
