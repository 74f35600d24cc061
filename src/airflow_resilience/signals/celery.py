"""Celery workers seen through the broker: which are alive, which are gone, what each held (pure).

The scheduler-side watcher asks every worker, through the broker, for its active and reserved tasks
(``app.control.inspect().active()`` / ``.reserved()``). A reply is positive evidence that the worker's
main process is alive and says which Celery task ids (Airflow's ``external_executor_id``) it holds. A
worker that answered before and has not answered for ``lost_after`` seconds is *lost*: the tasks of its
last reply will never report back. :class:`WorkerRoster` keeps that bookkeeping; it never reads a clock
itself.

Silence alone is never evidence that a task ran on a lost worker: a worker that has not answered yet (it
just joined, it is busy) or that runs with remote control off (``[celery] worker_enable_remote_control =
False``: it never answers) holds running tasks that no reply names. :func:`lost_task_ids` decides, from
positive evidence only, which Celery task ids went down with a lost worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any

#: Celery's state of a task that a worker has started (``task_track_started``, on in Airflow's default config).
STARTED = "STARTED"
#: Why :func:`lost_task_ids` hands a task back.
IN_LAST_ANSWER = "last-answer"
STARTED_THERE = "started-there"


@dataclass(frozen=True)
class LostWorker:
    """A worker declared lost, with what it held at its last reply."""

    hostname: str
    last_seen: float
    silent_for: float
    active: frozenset[str]
    reserved: frozenset[str]

    def note(self) -> str:
        return (
            f"celery worker {self.hostname} has not answered through the broker for {self.silent_for:.1f}s "
            f"(last reply: {len(self.active)} running, {len(self.reserved)} taken but not started)"
        )


@dataclass
class _Seen:
    last_seen: float
    active: frozenset[str] = frozenset()
    reserved: frozenset[str] = frozenset()


def task_ids(reply: Iterable[Mapping[str, Any]] | None) -> frozenset[str]:
    """Celery task ids of one worker's ``active()`` or ``reserved()`` list."""
    return frozenset(str(t["id"]) for t in (reply or ()) if isinstance(t, Mapping) and t.get("id"))


@dataclass
class WorkerRoster:
    """Workers seen so far. Feed it each round of replies; ask it who is lost."""

    lost_after: float
    workers: dict[str, _Seen] = field(default_factory=dict)

    def observe(
        self,
        now: float,
        active: Mapping[str, Iterable[Mapping[str, Any]]] | None,
        reserved: Mapping[str, Iterable[Mapping[str, Any]]] | None,
    ) -> None:
        """One round: ``{hostname: [task, ...]}`` of the workers that answered (``None``: nobody did)."""
        active, reserved = active or {}, reserved or {}
        for host in set(active) | set(reserved):
            seen = self.workers.get(host)
            self.workers[host] = _Seen(
                now,
                task_ids(active.get(host)) if host in active else (seen.active if seen else frozenset()),
                task_ids(reserved.get(host)) if host in reserved else (seen.reserved if seen else frozenset()),
            )

    def lost(self, now: float) -> list[LostWorker]:
        """Workers silent for ``lost_after`` seconds; each is reported once and forgotten."""
        gone = []
        for host, seen in list(self.workers.items()):
            silent = now - seen.last_seen
            if silent >= self.lost_after:
                gone.append(LostWorker(host, seen.last_seen, silent, seen.active, seen.reserved))
                del self.workers[host]
        return gone

    def held(self) -> frozenset[str]:
        """Every task id that a known (not lost) worker named in its last reply."""
        return frozenset().union(*(seen.active | seen.reserved for seen in self.workers.values()))

    def holder_of(self, task_id: str) -> str | None:
        for host, seen in self.workers.items():
            if task_id in seen.active or task_id in seen.reserved:
                return host
        return None


def started_on(meta: Any) -> str | None:
    """The worker node name that a result-backend meta says the task was STARTED on, else ``None``.

    ``meta`` is what ``app.backend.get_task_meta(task_id)`` returns: ``{"status": "STARTED", "result":
    {"pid": ..., "hostname": "<node name>"}, ...}`` while the task runs (``task_track_started``); any other
    state, a missing or malformed meta, or an exception raised reading it gives ``None``.
    """
    if not isinstance(meta, Mapping) or meta.get("status") != STARTED:
        return None
    info = meta.get("result")
    if not isinstance(info, Mapping):
        return None
    host = info.get("hostname")
    return host if isinstance(host, str) and host else None


#: How much later than the task instance's start a STARTED meta of the same try may be dated (the worker writes
#: it before the task's supervisor starts, on the same machine's clock: this is only rounding).
START_SLACK = timedelta(seconds=2)


def own_start(meta: Any, ti_start: datetime | None) -> bool | None:
    """Whether a STARTED meta was written by the start of *this* task instance's try, not later.

    A redelivered copy of the message (after the broker's visibility timeout) that another worker receives
    and Airflow's redelivery guard ignores still overwrites the meta with that worker's STARTED — long after
    the try started. True: the meta's ``date_done`` is at most :data:`START_SLACK` after ``ti_start``;
    False: later (a copy wrote it: not evidence of where the try runs); None: unknown (no ``date_done``, as
    key-value backends keep for STARTED, or no start)."""
    if not isinstance(meta, Mapping) or ti_start is None:
        return None
    done = meta.get("date_done")
    if isinstance(done, str):
        try:
            done = datetime.fromisoformat(done)
        except ValueError:
            return None
    if not isinstance(done, datetime):
        return None
    done = done if done.tzinfo else done.replace(tzinfo=timezone.utc)
    start = ti_start if ti_start.tzinfo else ti_start.replace(tzinfo=timezone.utc)
    return done <= start + START_SLACK


def lost_task_ids(
    lost: LostWorker,
    *,
    claimed: Iterable[str],
    unclaimed_running: Iterable[str],
    metas: Mapping[str, Any],
    starts: Mapping[str, datetime | None] | None = None,
) -> dict[str, str]:
    """The Celery task ids to hand back with ``lost``, each with its evidence (pure).

    * :data:`IN_LAST_ANSWER`: the lost worker's own last reply named it — active (it was running it there:
      handed back even when another worker now holds the same id, which is a redelivered copy of the
      message after the visibility timeout, and the package's redelivery guard never runs a second
      attempt from it), or reserved unless another worker claims it or the result backend says it STARTED
      on another worker;
    * :data:`STARTED_THERE`: an id of ``unclaimed_running`` (running task instances that no reply named)
      whose result-backend meta says STARTED with ``hostname`` exactly the lost worker's node name (it
      started there and the worker died before a round saw it) — and, when ``starts`` gives the task
      instance's start, the meta is not dated after it (:func:`own_start`: a redelivered copy that another
      worker received and ignored rewrites the meta later; that is no evidence).

    ``claimed``: ids that another worker holds (its reply this round or its last one): never handed back
    unless the lost worker's own reply had it active — that worker is positive evidence the task lives
    elsewhere. ``metas``: id ->
    backend meta (``app.backend.get_task_meta``), or the exception raised reading it. For an unclaimed id,
    a missing meta, an error, any state other than STARTED or another hostname means unknown, and unknown
    means no action.
    """
    claimed = frozenset(claimed)
    out: dict[str, str] = {}
    for task_id in sorted(lost.active):
        out[task_id] = IN_LAST_ANSWER
    for task_id in sorted(lost.reserved - lost.active - claimed):
        if started_on(metas.get(task_id)) in (None, lost.hostname):
            out[task_id] = IN_LAST_ANSWER
    for task_id in unclaimed_running:
        task_id = str(task_id)
        if task_id in out or task_id in claimed or task_id in lost.reserved:
            continue
        meta = metas.get(task_id)
        if started_on(meta) == lost.hostname and own_start(meta, (starts or {}).get(task_id)) is not False:
            out[task_id] = STARTED_THERE
    return out
