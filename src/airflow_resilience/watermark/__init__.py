"""Watermarks: cross-run values that advance only when the task instance that read them succeeds.

Pure core (no Airflow import), one idea per module: :mod:`.values` (names, JSON values, the forward
order), :mod:`.record` (one record's state machine), :mod:`.memory` (the backend protocol and an in-memory
backend with the server's rules) and, here, the :class:`Watermark` that DAG authors open. Every name of
those modules is importable from here, as before the split.

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

import time
from collections.abc import Callable, Iterator
from typing import Any

from airflow_resilience import context
from airflow_resilience.errors import WatermarkError, WatermarkHeldError
from airflow_resilience.watermark.memory import MemoryAttempt, MemoryWatermarks, WatermarkBackend
from airflow_resilience.watermark.record import (
    Action,
    Event,
    Grant,
    Held,
    Holder,
    HolderStatus,
    Record,
    _NOTHING,
    acquire,
    commit,
    operator_reset,
    operator_set,
    release,
    settle,
    stage,
    user_marked,
)
from airflow_resilience.watermark.values import (
    MAX_NAME_LENGTH,
    MAX_VALUE_BYTES,
    check_forward,
    check_name,
    check_value,
    int_to_lsn,
    lsn_to_int,
)

__all__ = [
    "AUTH_KEY", "MAX_NAME_LENGTH", "MAX_VALUE_BYTES", "Action", "Event", "Grant", "Held", "Holder", "HolderStatus",
    "MemoryAttempt", "MemoryWatermarks", "Record", "Watermark", "WatermarkBackend", "acquire", "check_forward",
    "check_name", "check_value", "commit", "end_of_task_actions", "end_open_watermarks", "int_to_lsn",
    "lsn_to_int", "on_task_end", "open_watermarks", "operator_reset", "operator_set", "release", "settle",
    "stage", "user_marked",
]

#: Key, in the holder's own task state store, of the digest that proves a request comes from that running
#: try (only the try's supervisor, which holds the try's execution token, can write there).
AUTH_KEY = "resilience:watermark:auth"


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
