"""One watermark record and its transitions (pure): holder, fence, staged and committed value, events."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from airflow_resilience.errors import (
    WatermarkFencedError,
    WatermarkHeldError,
)
from airflow_resilience.watermark.values import check_forward


# ------------------------------------------------------------------------------------------- record
@dataclass(frozen=True)
class Holder:
    """The attempt holding a watermark: a task instance try, named as Airflow names it."""

    #: Airflow's task instance id of that try (each try has its own).
    ti_id: str
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: int = -1
    try_number: int = 0

    def describe(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"dag {self.dag_id!r}, run {self.run_id!r}, task {self.task_id!r}{index}, try {self.try_number}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Holder | None:
        return None if not data else cls(**data)


class HolderStatus(str, Enum):
    """What became of the holder's attempt, as the metadata DB tells."""

    ALIVE = "alive"  # its task instance try is running
    SUCCEEDED = "succeeded"  # it ended in success
    ENDED = "ended"  # any other end: failed, up_for_retry, killed, marked failed, a newer try exists


class Action(str, Enum):
    """Entries of a watermark's history."""

    COMMIT = "commit"
    ROLLED_FORWARD = "commit-rolled-forward"  # staged by a holder that succeeded but died before committing
    DISCARDED = "discarded"  # staged by a holder that did not succeed
    FENCED = "fenced"  # a live-looking holder given up by an operator (--force)
    SET = "set"
    RESET = "reset"


@dataclass(frozen=True)
class Event:
    """One history entry produced by a transition (the backends store them)."""

    action: Action
    value: Any = None
    previous: Any = None
    version: int = 0
    holder: Holder | None = None
    detail: str = ""


_NOTHING = object()


@dataclass(frozen=True)
class Record:
    """The state of one watermark. Transitions below return a new record and the history events."""

    name: str
    value: Any = None
    committed: bool = False
    #: Number of commits (and operator sets) so far.
    version: int = 0
    #: Incremented on every grant; requests must carry the fence of their grant.
    fence: int = 0
    holder: Holder | None = None
    held_since: float | None = None
    staged: Any = _NOTHING
    committed_at: float | None = None
    committed_by: Holder | None = None

    @property
    def has_staged(self) -> bool:
        return self.staged is not _NOTHING


@dataclass(frozen=True)
class Grant:
    """The answer to an acquire that succeeded."""

    name: str
    fence: int
    value: Any
    committed: bool
    version: int


@dataclass(frozen=True)
class Held:
    """The answer to an acquire while another live attempt holds the name."""

    name: str
    holder: Holder
    held_since: float | None


def settle(rec: Record, status: HolderStatus | None, now: float) -> tuple[Record, list[Event]]:
    """Finish the hold of a holder that is no longer alive: commit what it staged if it succeeded."""
    if rec.holder is None or status in (None, HolderStatus.ALIVE):
        return rec, []
    holder = rec.holder
    if status is HolderStatus.SUCCEEDED:
        return _end_hold_committing(rec, holder, now, Action.ROLLED_FORWARD)
    if not rec.has_staged:
        return _released(rec), []
    return _released(rec), [Event(Action.DISCARDED, rec.staged, rec.value, rec.version, holder, "the holder did not succeed")]


def _released(rec: Record) -> Record:
    """``rec`` with no holder and nothing staged."""
    return replace(rec, holder=None, held_since=None, staged=_NOTHING)


def _end_hold_committing(rec: Record, by: Holder, now: float, action: Action) -> tuple[Record, list[Event]]:
    """End the hold of ``by``, whose task instance succeeded: what it staged (if anything) becomes the value."""
    released = _released(rec)
    if not rec.has_staged:
        return released, []
    done = replace(released, value=rec.staged, committed=True, version=rec.version + 1, committed_at=now, committed_by=by)
    return done, [Event(action, rec.staged, rec.value, done.version, by)]


def acquire(
    rec: Record, who: Holder, status: HolderStatus | None, now: float
) -> tuple[Record, list[Event], Grant | Held]:
    """Grant ``rec`` to ``who`` unless a live attempt of another task instance try holds it.

    ``status`` is what became of the current holder (``None`` when there is none). The same try asking
    again (a second ``Watermark`` of the same name, or a process that resumed the same try) gets a new
    grant, which fences the earlier one.
    """
    if rec.holder is not None and rec.holder.ti_id != who.ti_id and status is HolderStatus.ALIVE:
        return rec, [], Held(rec.name, rec.holder, rec.held_since)
    if rec.holder is not None and rec.holder.ti_id == who.ti_id:
        status = HolderStatus.ENDED  # the same try again: what its earlier grant staged is dropped
    rec, events = settle(rec, status, now)
    rec = replace(rec, holder=who, held_since=now, fence=rec.fence + 1, staged=_NOTHING)
    return rec, events, Grant(rec.name, rec.fence, rec.value, rec.committed, rec.version)


def _check_grant(rec: Record, who: Holder, fence: int) -> None:
    if rec.holder is None or rec.holder.ti_id != who.ti_id or rec.fence != fence:
        now = f"held by {rec.holder.describe()}" if rec.holder else "not held"
        raise WatermarkFencedError(
            f"watermark {rec.name!r}: this attempt ({who.describe()}, grant {fence}) no longer holds it (it is "
            f"{now}, grant {rec.fence}). It was given up for dead or taken over; nothing it staged will be "
            "committed"
        )


def stage(rec: Record, who: Holder, fence: int, value: Any, status: HolderStatus | None = None) -> Record:
    """Stage ``value`` (already checked as JSON) for commit at the holder's success.

    ``status`` is what became of the holder's try; only a running (``ALIVE``) holder may stage.
    """
    _check_grant(rec, who, fence)
    if status not in (None, HolderStatus.ALIVE):
        raise WatermarkFencedError(
            f"watermark {rec.name!r}: {who.describe()} is no longer running ({status.value}); it cannot stage"
        )
    check_forward(rec.name, rec.value if rec.committed else None, value)
    if rec.has_staged:
        check_forward(rec.name, rec.staged, value)
    return replace(rec, staged=value)


def commit(
    rec: Record, who: Holder, fence: int, now: float, status: HolderStatus | None = HolderStatus.SUCCEEDED
) -> tuple[Record, list[Event]]:
    """The holder's task instance succeeded: its staged value (if any) becomes the value; the hold ends.

    ``status`` is what the metadata DB says of the holder's try: a commit is refused unless it is
    ``SUCCEEDED`` (Airflow recorded the success first), so a try that failed, or was marked failed, never
    commits.
    """
    _check_grant(rec, who, fence)
    if status is not HolderStatus.SUCCEEDED:
        state = "still running" if status is HolderStatus.ALIVE else "ended without success"
        raise WatermarkFencedError(
            f"watermark {rec.name!r}: commit refused, {who.describe()} is {state} in Airflow's records; a "
            "watermark is committed only once its task instance is recorded as success"
        )
    return _end_hold_committing(rec, who, now, Action.COMMIT)


def user_marked(rec: Record, ti_id: str) -> tuple[Record, list[Event]]:
    """A user marked the holder's running task instance success (or failed) from the UI: its block may not
    have finished publishing, so what it staged is discarded, never rolled forward. Idempotent."""
    if rec.holder is None or rec.holder.ti_id != ti_id:
        return rec, []
    events = []
    if rec.has_staged:
        events.append(Event(Action.DISCARDED, rec.staged, rec.value, rec.version, rec.holder,
                            "a user changed the holder's state while it ran: its block may not have finished"))
    return _released(rec), events


def release(rec: Record, who: Holder, fence: int) -> tuple[Record, list[Event]]:
    """The holder gives up (its block raised, its task failed): staged value discarded. Idempotent."""
    if rec.holder is None or rec.holder.ti_id != who.ti_id or rec.fence != fence:
        return rec, []
    events = []
    if rec.has_staged:
        events.append(Event(Action.DISCARDED, rec.staged, rec.value, rec.version, who, "released by the holder"))
    return _released(rec), events


def operator_set(
    rec: Record,
    value: Any,
    status: HolderStatus | None,
    now: float,
    *,
    backwards: bool = False,
    force: bool = False,
    actor: str = "",
) -> tuple[Record, list[Event]]:
    """An operator sets the value (``airflow resilience watermark set``)."""
    rec, events = _operator_fence(rec, status, now, force, actor)
    previous = rec.value if rec.committed else None
    if not backwards:
        check_forward(rec.name, previous, value)
    rec = replace(rec, value=value, committed=True, version=rec.version + 1, committed_at=now, committed_by=None)
    return rec, [*events, Event(Action.SET, value, previous, rec.version, None, actor)]


def operator_reset(
    rec: Record, status: HolderStatus | None, now: float, *, force: bool = False, actor: str = ""
) -> tuple[Record, list[Event]]:
    """An operator forgets the value: the next holder reads its default."""
    rec, events = _operator_fence(rec, status, now, force, actor)
    previous = rec.value if rec.committed else None
    rec = replace(rec, value=None, committed=False, version=rec.version + 1, committed_at=now, committed_by=None)
    return rec, [*events, Event(Action.RESET, None, previous, rec.version, None, actor)]


def _operator_fence(
    rec: Record, status: HolderStatus | None, now: float, force: bool, actor: str
) -> tuple[Record, list[Event]]:
    rec, events = settle(rec, status, now)
    if rec.holder is None:
        return rec, events
    if not force:
        raise WatermarkHeldError(
            f"watermark {rec.name!r} is held by a running attempt ({rec.holder.describe()}); wait for it to "
            "end, or pass --force to fence it off (its commit will then be refused)"
        )
    fenced = Event(Action.FENCED, rec.staged if rec.has_staged else None, rec.value, rec.version, rec.holder, actor)
    return replace(_released(rec), fence=rec.fence + 1), [*events, fenced]


