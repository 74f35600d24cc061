"""CeleryExecutor, scheduler side: notice lost workers through the broker, in seconds.

Runs in the lost-worker detector process (a child of the scheduler) when the executor is
CeleryExecutor. Every ``[resilience] lost_worker_check_interval`` seconds it asks every worker, through the
broker, for its active and reserved tasks. A worker that answered before and has been silent for
``celery_worker_lost_after`` seconds is lost (:class:`~airflow_resilience.signals.celery.WorkerRoster`).
For each task instance of its last answer that is still ``running`` or ``queued`` in Airflow:

1. the evidence (``worker_lost``, the worker, how long it was silent) is written to the task instance's
   state store, where the scheduler-side classification reads it (cause ``worker.lost``);
2. the Celery task is marked FAILURE in Celery's result backend. The CeleryExecutor reads that at its
   next sync and reports the task failed; the scheduler then fails the task instance as "killed
   externally" — for a running one instead of waiting ``task_instance_heartbeat_timeout`` (300 s stock),
   for a queued one (taken by the dead worker, never started) instead of ``task_queued_timeout`` (600 s
   stock). The infrastructure budget grants the next try, which any live worker takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_resilience.signals.celery import LostWorker, WorkerRoster, task_ids

log = logging.getLogger(__name__)


def executor_is_celery() -> bool:
    from airflow.configuration import conf

    return "CeleryExecutor" in (conf.get("core", "executor", fallback="") or "")


class CeleryWorkerWatch:
    def __init__(
        self,
        lost_after: float,
        heartbeat_timeout: float,
        *,
        interval: float = 2.0,
        app: Any = None,
        inspect_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if app is None:
            from airflow.providers.celery.executors.celery_executor_utils import app as celery_app

            app = celery_app
        self.app = app
        self.roster = WorkerRoster(lost_after)
        self.heartbeat_timeout = heartbeat_timeout
        self.interval = interval
        self.inspect_timeout = inspect_timeout
        self.clock = clock

    def check(self) -> int:
        """One round; returns how many task instances were reported lost."""
        asked_at = datetime.now(timezone.utc)
        inspect = self.app.control.inspect(timeout=self.inspect_timeout)
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
        self.roster.observe(self.clock(), active, reserved)
        answered = set(active) | set(reserved)
        claimed = frozenset().union(*(task_ids(v) for v in (*active.values(), *reserved.values())))
        found = 0
        for worker in self.roster.lost(self.clock()):
            # Every other worker answered this round: a task instance that was already running when we
            # asked and that no live worker holds ran on the lost one (it died before a round saw it).
            complete = set(self.roster.workers) <= answered
            found += self.report(worker, claimed=claimed if complete else None, asked_at=asked_at)
        return found

    def report(self, worker: LostWorker, claimed: frozenset[str] | None = None, asked_at: datetime | None = None) -> int:
        """Hand back what ``worker`` held. With ``claimed`` (the task ids every live worker holds), also the
        running task instances no live worker holds that started before ``asked_at``."""
        from celery import states
        from sqlalchemy import and_, or_, select, true

        from airflow.models.taskinstance import TaskInstance
        from airflow.state import get_state_backend
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        from airflow_resilience.airflow.execution import EVIDENCE_KEY
        from airflow_resilience.airflow.scheduler import _scope, _set

        ids = worker.active | worker.reserved
        log.warning("airflow-resilience: %s", worker.note())
        held = and_(
            TaskInstance.external_executor_id.in_(sorted(ids)),
            TaskInstance.state.in_([TaskInstanceState.RUNNING, TaskInstanceState.QUEUED]),
        )
        where = held
        if claimed is not None and asked_at is not None:
            unclaimed = and_(
                TaskInstance.state == TaskInstanceState.RUNNING,
                TaskInstance.external_executor_id.is_not(None),
                TaskInstance.external_executor_id.not_in(sorted(claimed)) if claimed else true(),
                TaskInstance.start_date < asked_at - timedelta(seconds=1),
                or_(TaskInstance.executor.is_(None), TaskInstance.executor.contains("Celery")),
            )
            where = or_(held, unclaimed)
        elif not ids:
            return 0
        backend = get_state_backend()
        failed: list[tuple[str, str]] = []
        with create_session() as session:
            tis = session.scalars(select(TaskInstance).where(where)).all()
            for ti in tis:
                started = ti.state == TaskInstanceState.RUNNING
                if str(ti.external_executor_id) in ids:
                    note = worker.note() + (
                        "; the task was running there" if started else "; it had taken the workload but not started it"
                    )
                else:
                    note = worker.note() + (
                        "; the task was running and no worker that answered holds it: it ran there (the worker "
                        "died before a round saw it)"
                    )
                _set(
                    backend,
                    _scope(ti),
                    EVIDENCE_KEY,
                    {
                        "try_number": ti.try_number,
                        "worker_lost": True,
                        "note": note,
                        "celery_worker": worker.hostname,
                        "queued": not started,
                        "detected_at": time.time(),
                    },
                    session,
                )
                if started:  # also let the heartbeat check take it, should the executor report be missed
                    ti.last_heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=self.heartbeat_timeout + 60)
                failed.append((str(ti.external_executor_id), note))
                log.warning("airflow-resilience: lost celery worker for %s (%s): %s", ti.key, ti.state, note)
        for task_id, note in failed:  # after the evidence is committed: the executor acts on this at once
            self.app.backend.store_result(task_id, WorkerLost(note), states.FAILURE)
        return len(failed)


class WorkerLost(Exception):
    """Stored as the Celery result of a task whose worker was lost."""
