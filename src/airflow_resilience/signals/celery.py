"""Celery workers seen through the broker: which are alive, which are gone, what each held (pure).

The scheduler-side watcher asks every worker, through the broker, for its active and reserved tasks
(``app.control.inspect().active()`` / ``.reserved()``). A reply is positive evidence that the worker's
main process is alive and says which Celery task ids (Airflow's ``external_executor_id``) it holds. A
worker that answered before and has not answered for ``lost_after`` seconds is *lost*: the tasks of its
last reply will never report back. :class:`WorkerRoster` keeps that bookkeeping; it never reads a clock
itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


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

    def holder_of(self, task_id: str) -> str | None:
        for host, seen in self.workers.items():
            if task_id in seen.active or task_id in seen.reserved:
                return host
        return None
