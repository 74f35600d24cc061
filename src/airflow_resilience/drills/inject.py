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
    return disrupt_control_plane(af, kind, at)


def disrupt_control_plane(af: Any, kind: str, at: float | None = None) -> dict[str, Any]:
    """Restart (or kill and restart) one part of the deployment, as its process supervisor would:

    * ``scheduler_restart``: SIGTERM the scheduler (with LocalExecutor its task processes go with it, as in a
      scheduler pod or a systemd unit), start a new one;
    * ``api_restart``: SIGTERM the API server (the execution API every task talks to), start a new one;
    * ``triggerer_kill``: SIGKILL the triggerer (its triggers are picked up by the new one);
    * ``db_restart``: ``pg_ctl restart -m fast`` of the metadata database's server: every connection is cut;
    * ``broker_restart``: the Celery broker (Redis, no persistence) stopped and started empty.

    After a database or broker restart, a component that exits on the lost connection is started again (what
    systemd or Kubernetes does): the environment's :meth:`keep_alive` watchdog does it whenever that happens
    (Airflow's scheduler may take several seconds to give up); the record names what had exited 2 s after."""
    at = time.time() if at is None else at
    if kind in ("scheduler_restart", "api_restart", "triggerer_kill"):
        component, sig = {"scheduler_restart": ("scheduler", signal.SIGTERM), "api_restart": ("api-server", signal.SIGTERM),
                          "triggerer_kill": ("triggerer", signal.SIGKILL)}[kind]
        af.stop_component(component, sig)
        af.start_component(component)
        return {"kind": kind, "at": at, "component": component}
    if kind == "db_restart":
        server = getattr(af, "postgres_server", None)
        if server is None:
            raise ValueError(
                "db_restart needs a metadata database on a PostgreSQL server the drill may restart: "
                "AirflowEnvironment.create(postgres_server=PrivatePostgres().start()) (the drill CLI starts one)")
        server.restart("fast")
    elif kind == "broker_restart":
        server = getattr(af, "redis_server", None)
        if server is None or getattr(af, "executor", "") != "celery":
            raise ValueError(
                "broker_restart needs a CeleryExecutor environment on a Redis the drill may restart: "
                "AirflowEnvironment.create(executor='celery', redis_server=PrivateRedis().start())")
        server.restart()
    else:
        raise ValueError(f"unknown control-plane disruption {kind!r}")
    if hasattr(af, "keep_alive"):
        af.keep_alive()
    time.sleep(2)
    exited = [name for name, proc in list(af._procs.items()) if proc.poll() is not None]
    if not hasattr(af, "keep_alive"):
        for name in exited:
            af.start_component(name)
    return {"kind": kind, "at": at, "exited": exited}


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(f"drill: {what} not seen in {timeout:.0f}s")
