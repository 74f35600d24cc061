"""Watermarks: cross-run values that advance only when the task instance that read them succeeds.

Pure core (no Airflow import): the ordering of values, the state machine of one watermark record, an
in-memory backend with the same rules as the server, and the :class:`Watermark` that DAG authors open.

The rules, enforced where the record lives (the API server for a real Airflow, see
``airflow_resilience.airflow.watermark_db``; :class:`MemoryWatermarks` in unit tests):

* one **holder** at a time. Opening a watermark *acquires* it; while a live attempt holds it, another
  attempt waits. Every grant increments the record's **fence**; a request carrying an older fence is
  refused (:class:`~airflow_resilience.errors.WatermarkFencedError`): a holder that was given up for dead
  cannot write late.
* ``advance(v)`` **stages** a value at the record; it becomes the committed value only when the holder's
  task instance has ended in *success*. The commit is sent by the task right after Airflow recorded the
  success; if the task dies in between, the next attempt that opens the name finds the holder's task
  instance in ``success`` and commits the staged value for it (roll forward). A holder that ended any other
  way (failed, killed, retried, marked failed) has its staged value discarded.
* values are JSON and never move backwards where they are comparable (numbers, ISO-8601 timestamps,
  PostgreSQL LSNs); only an operator's ``reset`` (or ``set --backwards``) moves a value back.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from airflow_resilience import context
from airflow_resilience.errors import (
    CheckpointValueError,
    WatermarkBackwardsError,
    WatermarkError,
    WatermarkFencedError,
    WatermarkHeldError,
    WatermarkValueError,
)
from airflow_resilience.jsonvalue import check_json

#: Largest value accepted, as ``len(json.dumps(value))`` (the same as Airflow's state store default).
MAX_VALUE_BYTES = 65535
#: Key, in the holder's own task state store, of the digest that proves a request comes from that running
#: try (only the try's supervisor, which holds the try's execution token, can write there).
AUTH_KEY = "resilience:watermark:auth"
#: Longest watermark name (Airflow's id columns are 250 characters).
MAX_NAME_LENGTH = 250

_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


# ------------------------------------------------------------------------------------------- values
def lsn_to_int(lsn: str) -> int:
    """``'16/B374D848'`` -> the 64-bit position it names."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def int_to_lsn(pos: int) -> str:
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def _ordered(value: Any) -> tuple[str, Any] | None:
    """``(kind, key)`` for a value with a natural order, ``None`` for one without (objects, lists, text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        if _LSN.match(value):
            return ("LSN", lsn_to_int(value))
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        kind = "timestamp" if stamp.tzinfo is not None else "timestamp without time zone"
        return (kind, stamp)
    return None


def check_forward(name: str, old: Any, new: Any) -> None:
    """Raise :class:`WatermarkBackwardsError` if ``new`` would move watermark ``name`` back from ``old``.

    Values of an ordered kind (number, ISO timestamp, LSN) must not decrease (equal is fine: a run that
    found nothing new); a change of kind between ordered and unordered is refused too, since it is almost
    always a bug (``'2024-01-02'`` followed by ``'2024-01-02 late'``). Values with no order are not checked.
    """
    if old is None:
        return
    was, now = _ordered(old), _ordered(new)
    if was is None and now is None:
        return
    if was is None or now is None or was[0] != now[0]:
        before = was[0] if was else f"an unordered {type(old).__name__}"
        after = now[0] if now else f"an unordered {type(new).__name__}"
        raise WatermarkBackwardsError(
            f"watermark {name!r}: the committed value {old!r} is {before} but {new!r} is {after}; values "
            "must keep one comparable kind. To start over with another kind, an operator runs "
            f"'airflow resilience watermark reset {name}'"
        )
    if now[1] < was[1]:
        raise WatermarkBackwardsError(
            f"watermark {name!r}: {new!r} is before the committed value {old!r}; a watermark never moves "
            f"backwards. To re-read older data on purpose, an operator runs 'airflow resilience watermark "
            f"set {name} VALUE --backwards' (or 'reset')"
        )


def check_value(name: str, value: Any) -> str:
    """The JSON text of ``value``; :class:`WatermarkValueError` if it is not JSON or too large."""
    try:
        check_json(f"watermark {name}", value)
    except CheckpointValueError as exc:
        raise WatermarkValueError(str(exc).replace("checkpoint key 'watermark ", "watermark '")) from None
    text = json.dumps(value)
    if len(text) > MAX_VALUE_BYTES:
        raise WatermarkValueError(
            f"watermark {name!r}: the value is {len(text)} bytes as JSON, more than the {MAX_VALUE_BYTES} "
            "accepted; keep the position (an id, a timestamp, an LSN) in the watermark, not the data"
        )
    return text


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise WatermarkValueError(
            f"watermark name {name!r}: expected a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            "e.g. 'orders.updated_at'"
        )
    return name


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


# ------------------------------------------------------------------------------------------ the API
class Watermark:
    """A cross-run value that advances only when the task instance that read it succeeds.

    ::

        with Watermark("orders.updated_at", default="1970-01-01") as wm:
            rows = fetch(since=wm.value)          # the last committed value, or the default
            wm.advance(max_updated(rows))         # staged: committed only when this task instance succeeds
            publish(rows)                         # a kill or an error here: the next attempt reads the old value

    Opening waits while another running attempt holds the name (up to ``wait_timeout`` seconds, default
    ``[resilience] watermark_wait_timeout``), then raises :class:`WatermarkHeldError` naming the holder.
    Outside a running Airflow task pass ``backend=`` (e.g. ``MemoryWatermarks().attempt("ti-1")``).

    Known limitation: a watermark is held by one process; it cannot stay open across a deferral (the
    resumed process opens it again).
    """

    def __init__(
        self,
        name: str,
        default: Any = None,
        *,
        wait_timeout: float | None = None,
        poll_interval: float | None = None,
        backend: WatermarkBackend | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = check_name(name)
        if default is not None:
            check_value(name, default)
        self.default = default
        self._wait_timeout = wait_timeout
        self._poll_interval = poll_interval
        self._backend = backend
        self._sleep = sleep
        self._clock = clock
        self._grant: Grant | None = None
        self._staged: Any = _NOTHING
        self.waited: float = 0.0
        self._opened_at = ""

    # -- lifecycle
    def __enter__(self) -> Watermark:
        import sys

        caller = sys._getframe(1)
        here = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        backend = self._backend
        wait_timeout, poll = self._wait_timeout, self._poll_interval
        if backend is None:
            rt = context.current()
            backend = rt.watermark_backend()
            cfg_timeout, cfg_poll = rt.watermark_wait()
            wait_timeout = cfg_timeout if wait_timeout is None else wait_timeout
            poll = cfg_poll if poll is None else poll
        self._backend = backend
        first = _held_by_same_attempt(self.name, backend)
        if first is not None:
            raise WatermarkError(
                f"watermark {self.name!r} is already open in this attempt (opened at {first._opened_at}); opening "
                f"it again at {here} would hand out a new hold and drop what the first one staged. Use the first "
                "'wm' (advance it again to move further), or end its 'with' block with an error to release it"
            )
        if wait_timeout is None or poll is None:  # an explicit backend: the declared defaults
            default_timeout, default_poll = context.default_watermark_wait()
            wait_timeout = default_timeout if wait_timeout is None else wait_timeout
            poll = default_poll if poll is None else poll
        start = self._clock()
        while True:
            answer = backend.acquire(self.name)
            if isinstance(answer, Grant):
                break
            self.waited = self._clock() - start
            if self.waited >= wait_timeout:
                raise WatermarkHeldError(
                    f"watermark {self.name!r} is still held by {answer.holder.describe()} after waiting "
                    f"{self.waited:.0f}s (wait_timeout={wait_timeout:g}s). If that attempt is dead, Airflow "
                    "will fail it and the name frees itself; raise wait_timeout (or [resilience] "
                    "watermark_wait_timeout) if runs legitimately overlap this long"
                )
            self._sleep(min(poll, max(0.0, wait_timeout - self.waited)) or poll)
        self.waited = self._clock() - start
        self._grant = answer
        self._opened_at = here
        _register(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._grant is None:
            return
        if exc_type is not None:
            # The block failed: nothing it staged may be committed, and the name is free again at once.
            # If the release cannot be sent, the block's own error still propagates: the next opener finds
            # this try no longer running and drops what it staged.
            try:
                self._backend.release(self.name, self._grant.fence)  # type: ignore[union-attr]
            except Exception as release_error:
                import logging

                logging.getLogger(__name__).warning("watermark %r not released at once: %s", self.name, release_error)
            finally:
                _unregister(self)
                self._grant = None
        # On success the hold lasts until the task instance ends (commit at success, release otherwise).

    # -- reading and advancing
    def _granted(self) -> Grant:
        if self._grant is None:
            raise WatermarkError(f"watermark {self.name!r} is not open: use 'with Watermark(...) as wm:'")
        return self._grant

    @property
    def value(self) -> Any:
        """The last committed value, or the default when nothing was ever committed."""
        grant = self._granted()
        return grant.value if grant.committed else self.default

    @property
    def committed(self) -> bool:
        return self._granted().committed

    @property
    def version(self) -> int:
        """How many commits (and operator sets) the value has seen."""
        return self._granted().version

    @property
    def staged(self) -> Any:
        """The value staged by :meth:`advance` (``None`` if none)."""
        return None if self._staged is _NOTHING else self._staged

    def advance(self, value: Any) -> None:
        """Stage ``value``; it is committed only when this task instance ends in success."""
        grant = self._granted()
        check_value(self.name, value)
        check_forward(self.name, grant.value if grant.committed else None, value)
        if self._staged is not _NOTHING:
            check_forward(self.name, self._staged, value)
        self._backend.stage(self.name, grant.fence, value)  # type: ignore[union-attr]
        self._staged = value

    # -- end of the task instance (called by the listener, or by tests)
    def _end(self, succeeded: bool) -> None:
        if self._grant is None:
            return
        try:
            if succeeded:
                self._backend.commit(self.name, self._grant.fence)  # type: ignore[union-attr]
            else:
                self._backend.release(self.name, self._grant.fence)  # type: ignore[union-attr]
        finally:
            self._grant = None


def on_task_end(action: Callable[[bool], None]) -> None:
    """Run ``action(succeeded)`` once when this task instance ends, before its watermarks are committed.

    Sources that hold their own position (a replication slot) advance it here, only on success.
    """
    context.current_or_detached().end_actions.append(action)


def end_of_task_actions() -> list[Callable[[bool], None]]:
    """The registered actions of the running attempt, each handed out once."""
    rt = context.current_or_none()
    return [] if rt is None else rt.take_end_actions()


def _attempt_of(backend: Any) -> Any:
    """Which attempt of which deployment a backend speaks for (a new backend object per open, same key)."""
    who = getattr(backend, "who", None)
    ti_id = getattr(who, "ti_id", None)
    if ti_id is None:
        return id(backend)
    return (type(backend).__name__, id(getattr(backend, "store", None)), ti_id)


def _held_by_same_attempt(name: str, backend: Any) -> Watermark | None:
    """The open watermark of ``name`` that the same attempt (the backend's holder) already holds."""
    mine = _attempt_of(backend)
    for wm in context.current_or_detached().watermarks:
        if wm.name == name and wm._grant is not None and _attempt_of(wm._backend) == mine:
            return wm
    return None


def _register(wm: Watermark) -> None:
    context.current_or_detached().watermarks.append(wm)


def _unregister(wm: Watermark) -> None:
    rt = context.current_or_none()
    if rt is not None and wm in rt.watermarks:
        rt.watermarks.remove(wm)


def open_watermarks() -> Iterator[Watermark]:
    """Watermarks of the running attempt still held (their block ended without error)."""
    rt = context.current_or_none()
    return iter([] if rt is None else list(rt.watermarks))


def end_open_watermarks(succeeded: bool) -> list[Exception]:
    """Commit (``succeeded``) or release every held watermark of the running attempt; returns the errors."""
    errors: list[Exception] = []
    for wm in list(open_watermarks()):
        try:
            wm._end(succeeded)
        except Exception as exc:  # one failed commit must not keep the others from being sent
            errors.append(exc)
        finally:
            _unregister(wm)
    return errors
