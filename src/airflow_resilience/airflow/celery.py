"""CeleryExecutor integration: the worker side (a warm shutdown drains the running tasks).

Enable it with Airflow's documented hook for Celery settings::

    [celery]
    celery_config_options = airflow_resilience.airflow.celery.CELERY_CONFIG

``CELERY_CONFIG`` is Airflow's default Celery configuration, unchanged; importing it connects a handler to
Celery's ``worker_shutting_down`` signal in each ``airflow celery worker``. (With your own config dict,
call :func:`install` from its module instead.)

On a warm shutdown (SIGTERM to the worker: an autoscaler, a spot reclaim, ``kubectl drain``) Celery stops
taking messages and *waits for the running tasks to finish* — for hours, until the platform's grace period
runs out and it SIGKILLs everything. The handler sends SIGTERM to the task runner of every running task
instead: each one drains (writes its checkpoint, hands the task instance back to Airflow, no retry spent)
and the worker exits within seconds; the next attempts run on other workers. A runner still alive after
``[resilience] celery_drain_grace`` seconds is SIGKILLed, so the worker is gone before the platform's
deadline (Kubernetes' ``terminationGracePeriodSeconds`` defaults to 30 s).

The scheduler side (lost workers, workloads taken by a worker that died) is
:mod:`airflow_resilience.airflow.celery_watch`.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def _default_config() -> dict:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    return dict(DEFAULT_CELERY_CONFIG)


def task_runners() -> list:
    """The task runners of this worker: children of its pool processes (each pool process that runs a
    task is the task's supervisor, and the runner is its child)."""
    import psutil

    me = psutil.Process()
    runners = []
    for pool_process in me.children():
        try:
            runners.extend(pool_process.children())
        except psutil.NoSuchProcess:
            continue
    return runners


def drain_running_tasks(grace: float) -> list[int]:
    """SIGTERM every task runner of this worker; SIGKILL those still alive after ``grace`` seconds."""
    import psutil

    runners = task_runners()
    for runner in runners:
        try:
            runner.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass

    def escalate() -> None:
        _gone, alive = psutil.wait_procs(runners, timeout=grace)
        for runner in alive:
            log.warning("airflow-resilience: task runner pid %s did not drain in %ss: SIGKILL", runner.pid, grace)
            try:
                runner.kill()
            except psutil.NoSuchProcess:
                pass

    if runners:
        threading.Thread(target=escalate, name="resilience-drain-grace", daemon=True).start()
    return [r.pid for r in runners]


def _on_worker_shutting_down(sig=None, how=None, exitcode=None, **_kwargs) -> None:
    try:
        from airflow_resilience.airflow.runtime import settings

        cfg = settings()
        if not cfg.enabled or not cfg.drain_on_sigterm or how != "Warm":
            return
        pids = drain_running_tasks(cfg.celery_drain_grace)
        # print, not log: Celery is inside its signal handler and its logging may be redirected
        print(
            f"airflow-resilience: warm shutdown ({sig}): drained the task runners {pids} "
            f"(SIGKILL after {cfg.celery_drain_grace:g}s)",
            flush=True,
        )
    except Exception as exc:  # never break Celery's shutdown
        print(f"airflow-resilience: could not drain the running tasks: {exc!r}", flush=True)


_installed = False


def install() -> None:
    """Connect the warm-shutdown drain to Celery's ``worker_shutting_down`` signal (idempotent)."""
    global _installed
    if _installed:
        return
    from celery.signals import worker_shutting_down

    worker_shutting_down.connect(_on_worker_shutting_down, weak=False, dispatch_uid="airflow-resilience-drain")
    _installed = True


CELERY_CONFIG = _default_config()
install()
