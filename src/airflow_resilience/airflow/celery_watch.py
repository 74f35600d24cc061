"""CeleryExecutor, scheduler side: notice lost workers through the broker, in seconds.

Runs in the lost-worker detector process (a child of the scheduler) when the executor is
CeleryExecutor. Every ``[resilience] lost_worker_check_interval`` seconds it asks every worker, through the
broker, for its active and reserved tasks. A worker that answered before and has been silent for
``celery_worker_lost_after`` seconds is lost (:class:`~airflow_resilience.signals.celery.WorkerRoster`).

Do no harm: a task instance is handed back only on *positive evidence* that it ran on the lost worker
(:func:`~airflow_resilience.signals.celery.lost_task_ids`). What counts as evidence:

* the lost worker's own last answer named its Celery task id (active: "running there"; reserved: "taken the
  workload but not started" — unless the result backend says it STARTED on another worker), and the task
  instance is still ``running`` or ``queued``;
* the task instance is ``running``, no answer names it, and Celery's result backend says its task id is
  ``STARTED`` with ``hostname`` exactly the lost worker's node name (``task_track_started``, on in
  Airflow's default Celery config, stores ``{"pid": ..., "hostname": ...}`` when a worker starts a task),
  the task instance started before the worker was declared lost, and the meta is not dated after the task
  instance's start (a redelivered copy of the message that another worker received and Airflow's
  redelivery guard ignored rewrites the meta with *that* worker's name, seconds or hours later): it started
  there, between the worker's last answer and its death.

What does *not* count: silence. A running task instance that no answer names may run on a worker that has
not answered yet (it just joined, it is busy) or that never answers (``[celery]
worker_enable_remote_control = False``); it is left alone unless the result backend names the lost worker.
A task id that another worker holds (its answer this round or its last one) is never handed back. A result
meta that is missing, in another state (``PENDING``, ``SUCCESS``, ...), names another worker or cannot be
read means unknown, and unknown means no action (logged); so does any error while reading the
evidence. Such a task instance is left to Airflow's own ``task_instance_heartbeat_timeout``, as on stock.

Evidence that lands late is looked at again: a lost worker stays on a list for ``task_instance_heartbeat_timeout``
(after which Airflow's own check takes over anyway) and every few seconds the same rules are applied again —
with the time it was declared lost as the cut-off, so a task that started after that (on a new worker of the
same name, say) is never taken for one of its. A worker that answers again leaves the list at once.

For each task instance handed back:

1. the evidence (``worker_lost``, the worker, how long it was silent, which evidence) is written to the task
   instance's state store, where the scheduler-side classification reads it (cause ``worker.lost``);
2. the Celery task is marked FAILURE in Celery's result backend. The CeleryExecutor reads that at its
   next sync and reports the task failed; the scheduler then fails the task instance as "killed
   externally" — for a running one instead of waiting ``task_instance_heartbeat_timeout`` (300 s stock),
   for a queued one (taken by the dead worker, never started) instead of ``task_queued_timeout`` (600 s
   stock). The infrastructure budget grants the next try, which any live worker takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_resilience.signals.celery import (
    STARTED_THERE,
    LostWorker,
    WorkerRoster,
    lost_task_ids,
    started_on,
    task_ids,
)

log = logging.getLogger(__name__)


def executor_is_celery() -> bool:
    from airflow.configuration import conf

    return "CeleryExecutor" in (conf.get("core", "executor", fallback="") or "")


class CeleryWorkerWatch:
    #: Tag ``kind`` of the detector's metrics.
    kind = "celery"

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
        #: Workers that answered the last round (``None`` until a round completes).
        self.seen: int | None = None
        #: Lost workers whose evidence is looked at again every ``recheck_every`` seconds, for
        #: ``recheck_for`` (the heartbeat timeout: after it, Airflow's own check takes over anyway), until they
        #: answer again.
        self._departed: dict[str, _Departed] = {}
        self.recheck_every = max(5.0, 2 * interval)
        self.recheck_for = heartbeat_timeout

    def check(self) -> int:
        """One round; returns how many task instances were reported lost."""
        self.seen = None
        inspect = self.app.control.inspect(timeout=self.inspect_timeout)
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
        answered = set(active) | set(reserved)
        self.seen = len(answered)
        self.roster.observe(self.clock(), active, reserved)
        lost = self.roster.lost(self.clock())
        now = self.clock()
        for host in answered:  # it answers again (restarted under the same name): nothing to look for
            self._departed.pop(host, None)
        self._departed = {h: d for h, d in self._departed.items() if now - d.declared < self.recheck_for}
        due = [d for d in self._departed.values() if now - d.checked >= self.recheck_every]
        if not lost and not due:
            return 0
        # What the other workers hold: their answers this round, and the last answer of those that did not
        # answer it. Any of them is positive evidence that the task lives elsewhere.
        claimed = self.roster.held().union(*(task_ids(v) for v in (*active.values(), *reserved.values())))
        # The cut-off for "started there": the moment it was declared lost (a task that started later is never
        # one of its), not the start of this round — a task can start on a worker after its last answer and
        # just before its death: exactly the case the result-backend evidence is for.
        declared_at = datetime.now(timezone.utc)
        handed = sum(self.report(worker, claimed=claimed, asked_at=declared_at) for worker in lost)
        for worker in lost:
            self._departed[worker.hostname] = _Departed(worker, declared_at, now, now)
        for d in due:
            # Evidence that landed after the declaration (the scheduler wrote the task's Celery id late, the
            # result backend was slow or unreadable): looked at again, for tasks that started before the worker
            # was declared lost only — never one started by a new worker of the same name.
            d.checked = now
            handed += self.report(d.worker, claimed=claimed, asked_at=d.asked_at, recheck=True)
        return handed

    def meta(self, task_id: str) -> Any:
        """Celery's result-backend meta of ``task_id``, or the exception raised reading it."""
        try:
            return self.app.backend.get_task_meta(task_id, cache=False)
        except Exception as exc:  # unknown: no action for this task
            return exc

    def unclaimed_running(self, claimed: Iterable[str], asked_at: datetime) -> dict[str, datetime]:
        """Celery task ids of running task instances that no answer names and that started before
        ``asked_at`` (the worker's declaration), with their start dates."""
        from sqlalchemy import and_, or_, select, true

        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        claimed = sorted(claimed)
        with create_session() as session:
            rows = session.execute(
                select(TaskInstance.external_executor_id, TaskInstance.start_date).where(
                    and_(
                        TaskInstance.state == TaskInstanceState.RUNNING,
                        TaskInstance.external_executor_id.is_not(None),
                        TaskInstance.external_executor_id.not_in(claimed) if claimed else true(),
                        TaskInstance.start_date < asked_at,
                        or_(TaskInstance.executor.is_(None), TaskInstance.executor.contains("Celery")),
                    )
                )
            ).all()
        return {str(i): start for i, start in rows if i}

    def report(
        self, worker: LostWorker, claimed: Iterable[str] = (), asked_at: datetime | None = None, recheck: bool = False
    ) -> int:
        """Hand back what ``worker`` went down with, on positive evidence only (see the module docstring).
        ``claimed``: the task ids the other workers hold. ``recheck``: a later look at a worker declared lost
        before (quiet: only a hand-back is logged)."""
        from celery import states
        from sqlalchemy import and_, select

        from airflow.models.taskinstance import TaskInstance
        from airflow.state import get_state_backend
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        from airflow_resilience.airflow.execution import EVIDENCE_KEY
        from airflow_resilience.airflow.ti_state import task_scope, write_json

        if not recheck:
            log.warning("airflow-resilience: %s", worker.note())
        claimed = frozenset(claimed)
        asked_at = asked_at or datetime.now(timezone.utc)
        try:
            unclaimed = self.unclaimed_running(claimed | worker.active | worker.reserved, asked_at)
        except Exception:  # no evidence read: no action on anything but the worker's own answer
            log.warning("airflow-resilience: could not list running task instances", exc_info=True)
            unclaimed = {}
        # Reserved ones too: one that the result backend says STARTED on another worker is not handed back.
        reserved = sorted(worker.reserved - worker.active - claimed)
        metas = {task_id: self.meta(task_id) for task_id in (*unclaimed, *reserved)}
        decided = lost_task_ids(worker, claimed=claimed, unclaimed_running=unclaimed, metas=metas, starts=unclaimed)
        for task_id in unclaimed:
            if task_id not in decided:
                (log.debug if recheck else log.info)(
                    "airflow-resilience: celery task %s is running and no worker named it, but nothing says "
                    "it ran on lost worker %s (result backend: %s): no action",
                    task_id,
                    worker.hostname,
                    _describe(metas.get(task_id)),
                )
        for task_id in sorted((worker.active | worker.reserved) - set(decided)):
            (log.debug if recheck else log.info)(
                "airflow-resilience: celery task %s of lost worker %s is held by another worker or started "
                "on one (result backend: %s): no action",
                task_id,
                worker.hostname,
                _describe(metas.get(task_id)),
            )
        if not decided:
            return 0
        backend = get_state_backend()
        failed: list[tuple[str, str]] = []
        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance).where(
                    and_(
                        TaskInstance.external_executor_id.in_(sorted(decided)),
                        TaskInstance.state.in_([TaskInstanceState.RUNNING, TaskInstanceState.QUEUED]),
                    )
                )
            ).all()
            for ti in tis:
                task_id = str(ti.external_executor_id)
                evidence = decided[task_id]
                started = ti.state == TaskInstanceState.RUNNING
                if evidence == STARTED_THERE:
                    if not started:  # it was running when we read the meta; anything else now: unknown
                        continue
                    note = worker.note() + (
                        "; the task was running, no worker that answered holds it and Celery's result backend "
                        "says it started there (the worker died before a round saw it)"
                    )
                else:
                    note = worker.note() + (
                        "; the task was running there" if started else "; it had taken the workload but not started it"
                    )
                write_json(
                    backend,
                    task_scope(ti),
                    EVIDENCE_KEY,
                    {
                        "try_number": ti.try_number,
                        "worker_lost": True,
                        "note": note,
                        "celery_worker": worker.hostname,
                        "evidence": evidence,
                        "queued": not started,
                        "detected_at": time.time(),
                    },
                    session,
                )
                if started:  # also let the heartbeat check take it, should the executor report be missed
                    ti.last_heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=self.heartbeat_timeout + 60)
                failed.append((task_id, note))
                log.warning("airflow-resilience: lost celery worker for %s (%s): %s", ti.key, ti.state, note)
        for task_id, note in failed:  # after the evidence is committed: the executor acts on this at once
            self.app.backend.store_result(task_id, WorkerLost(note), states.FAILURE)
        return len(failed)


@dataclass
class _Departed:
    """A worker declared lost: its last answer, when we asked that round, when declared and last looked at."""

    worker: LostWorker
    asked_at: datetime
    declared: float
    checked: float


def _describe(meta: Any) -> str:
    """A result-backend meta for a log line (never raises)."""
    if isinstance(meta, BaseException):
        return f"unreadable: {meta!r}"[:200]
    if not isinstance(meta, Mapping):
        return "no meta" if meta is None else "malformed meta"
    host = started_on(meta)
    return f"STARTED on {host}" if host else str(meta.get("status"))[:40]


class WorkerLost(Exception):
    """Stored as the Celery result of a task whose worker was lost."""

