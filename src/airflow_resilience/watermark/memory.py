"""The backend protocol, and watermark records in memory with the server's rules (unit tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_resilience import context

from airflow_resilience.watermark.record import (
    Event,
    Grant,
    Held,
    Holder,
    HolderStatus,
    Record,
    acquire,
    commit,
    operator_reset,
    operator_set,
    release,
    settle,
    stage,
)


# ------------------------------------------------------------------------------------------ backends
class WatermarkBackend(Protocol):
    """Where watermark records live, as seen by one attempt (``who``)."""

    who: Holder

    def acquire(self, name: str) -> Grant | Held: ...

    def stage(self, name: str, fence: int, value: Any) -> None: ...

    def commit(self, name: str, fence: int) -> None: ...

    def release(self, name: str, fence: int) -> None: ...


@dataclass
class MemoryWatermarks:
    """Watermark records in memory, with the server's rules: for unit tests of the core and of users' tasks.

    ``attempt(...)`` gives one attempt's backend; :meth:`MemoryAttempt.succeed` / :meth:`MemoryAttempt.fail`
    play the end of its task instance (what Airflow's listener does in a real task).
    """

    clock: Callable[[], float] = time.monotonic
    records: dict[str, Record] = field(default_factory=dict)
    history: list[tuple[str, Event]] = field(default_factory=list)
    #: ti_id -> status; attempts not listed are alive.
    status: dict[str, HolderStatus] = field(default_factory=dict)

    def attempt(self, ti_id: str, **identity: Any) -> MemoryAttempt:
        return MemoryAttempt(self, Holder(ti_id=ti_id, **identity))

    def holder_status(self, rec: Record) -> HolderStatus | None:
        if rec.holder is None:
            return None
        return self.status.get(rec.holder.ti_id, HolderStatus.ALIVE)

    def _apply(self, name: str, rec: Record, events: list[Event]) -> None:
        self.records[name] = rec
        self.history.extend((name, e) for e in events)

    def get(self, name: str) -> Record:
        rec = self.records.get(name, Record(name))
        rec, events = settle(rec, self.holder_status(rec), self.clock())
        self._apply(name, rec, events)
        return rec

    def set(self, name: str, value: Any, **kwargs: Any) -> None:
        rec = self.records.get(name, Record(name))
        self._apply(name, *operator_set(rec, value, self.holder_status(rec), self.clock(), **kwargs))

    def reset(self, name: str, **kwargs: Any) -> None:
        rec = self.records.get(name, Record(name))
        self._apply(name, *operator_reset(rec, self.holder_status(rec), self.clock(), **kwargs))


@dataclass
class MemoryAttempt:
    """One attempt's view of :class:`MemoryWatermarks` (a :class:`WatermarkBackend`)."""

    store: MemoryWatermarks
    who: Holder
    held: dict[str, int] = field(default_factory=dict)

    def acquire(self, name: str) -> Grant | Held:
        rec = self.store.records.get(name, Record(name))
        rec, events, answer = acquire(rec, self.who, self.store.holder_status(rec), self.store.clock())
        self.store._apply(name, rec, events)
        if isinstance(answer, Grant):
            self.held[name] = answer.fence
        return answer

    def stage(self, name: str, fence: int, value: Any) -> None:
        rec = self.store.records[name]
        self.store.records[name] = stage(rec, self.who, fence, value, self.store.holder_status(rec))

    def commit(self, name: str, fence: int) -> None:
        rec = self.store.records[name]
        self.store._apply(name, *commit(rec, self.who, fence, self.store.clock(), self.store.holder_status(rec)))

    def release(self, name: str, fence: int) -> None:
        self.store._apply(name, *release(self.store.records[name], self.who, fence))

    @contextmanager
    def running(self) -> Iterator[MemoryAttempt]:
        """Inside the block this is the running attempt: ``Watermark(name)`` without a backend uses it
        (a unit test of a task's own code). End it with :meth:`succeed` or :meth:`fail`."""
        rt = context.AttemptRuntime(watermark_backend=lambda: self, label=f"unit test {self.who.ti_id}")
        with context.running(rt):
            yield self

    def succeed(self) -> None:
        """Play the task instance ending in success: commit every watermark this attempt holds."""
        self.store.status[self.who.ti_id] = HolderStatus.SUCCEEDED
        for name, fence in self.held.items():
            self.commit(name, fence)
        self.held.clear()

    def fail(self) -> None:
        """Play the task instance ending otherwise: release every watermark this attempt holds."""
        self.store.status[self.who.ti_id] = HolderStatus.ENDED
        for name, fence in self.held.items():
            self.release(name, fence)
        self.held.clear()

    def die(self) -> None:
        """Play a hard kill: nothing is sent; the records keep this attempt as holder until someone looks."""
        self.store.status[self.who.ti_id] = HolderStatus.ENDED
        self.held.clear()


