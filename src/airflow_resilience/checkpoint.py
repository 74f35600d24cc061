"""Checkpoints for DAG authors: save progress inside a task so the next attempt resumes instead of redoing.

.. code-block:: python

    @task(retries=2)
    def load():
        ckpt = Checkpoint.current()
        cluster = ckpt.step("provision", provision)          # runs once across all attempts
        for part in ckpt.iterate(partitions(), key="parts"):  # resumes after the last finished item
            copy(part)

What is saved, and when
-----------------------
All state of one attempt is one JSON document in the task instance's state store (key
``resilience:checkpoint:try-N``) plus a small *head* record naming the latest document. ``step()``
results are written as soon as the step returns (the step waits for its write). ``set()`` and
``iterate()`` progress are written at once by default (``flush_interval=0``); with a positive
``flush_interval`` they are batched and written at most that many seconds apart, at the end of an
``iterate`` loop, when the loop body raises, on ``flush()``, when the task ends (the plugin's listener
flushes), and at the first item boundary after a SIGTERM (and at every boundary after it: the process is
being stopped).

Write-behind (``write_behind=True``; in Airflow ``[resilience] checkpoint_write_behind``, on by default):
those ``set()``/``iterate()`` writes run on a background thread (:mod:`airflow_resilience.checkpoint_writer`)
while the task goes on. At most one write is in flight; a newer state waits for it in one slot, replacing
any older state waiting there. ``set()`` returns at once; an ``iterate`` boundary waits until the state it
hands over has been *taken* by the writer (so the previous write has landed) — the loop never runs more
than one item ahead of the store. ``flush()``, ``step()``, the end of a loop, a SIGTERM drain and the end
of the task wait until everything is written. A failed background write is raised by the next checkpoint
call (``set``, a loop boundary, ``step``, ``flush``) with the same error as a synchronous write:
``StaleAttemptError`` when a newer attempt took over (and at every later call), ``CheckpointStoreError``
for a store failure (the state stays pending and is written again by the next write). Values are
validated (JSON, size) synchronously in ``set()``.

Known limitation — what a hard kill loses
-----------------------------------------
A SIGKILL (or OOM kill, or a lost node) loses only what was not yet written. Synchronous writes
(``write_behind=False``) with ``flush_interval=0``: the loop item that was running (it is redone). With
write-behind: at most **two** items of an ``iterate`` loop are redone — the last item whose write was in
flight and the item after it, whether that one was still running or had finished and was waiting for that
write; and the ``set()`` values handed over since the last write that completed (the write in flight and
the state waiting behind it). For ``step()`` either way: a result computed but not yet written (the write
takes a few milliseconds after ``fn`` returns; in that window the step runs again). With a positive
``flush_interval`` add at most ``flush_interval`` seconds of finished items.

Fencing
-------
Each attempt writes its own document key, and only the current attempt may write at all: Airflow's
execution API refuses state-store writes from a task instance id that is no longer current (a new try
gets a new id), and this class reports the refusal as :class:`StaleAttemptError` instead of dropping it
silently (``task_state_store.set`` raises a bare ``AirflowRuntimeError: API_SERVER_ERROR``). A late write of a zombie attempt therefore never
overwrites a newer attempt's progress.
"""

from __future__ import annotations

import enum
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_resilience import context
from airflow_resilience.attempt import FORMAT, HEAD_KEY, AttemptId, Head, Plan, doc_key, plan
from airflow_resilience.checkpoint_writer import WriteBehind
from airflow_resilience.errors import (
    CheckpointTooLargeError,
    ConfigurationError,
    CorruptCheckpointError,
    StaleAttemptError,
)
from airflow_resilience.jsonvalue import check_json, encoded_size
from airflow_resilience.ledger import LEDGER_KEY, Ledger
from airflow_resilience.store import CheckpointStore

T = TypeVar("T")
_MISSING = object()
#: The head is rewritten at least this often by a long attempt, so it never expires before the document
#: it points to ([state_store] default_retention_days counts from a row's last write).
HEAD_REFRESH_SECONDS = 86400.0


@dataclass(frozen=True)
class Resumption:
    """How this attempt started, for logs and for the task itself (``ckpt.resumption``)."""

    #: What was done with the saved state.
    plan: Plan
    #: The try whose checkpoint was loaded (``None`` when starting fresh).
    from_try: int | None
    #: Generation of the checkpoint: starts at 0 and moves on each clear that reruns the task.
    generation: int
    #: Items already finished per ``iterate`` key when this attempt started.
    loops: dict[str, int]
    #: Step names already done when this attempt started.
    steps: tuple[str, ...]


@dataclass(frozen=True)
class _Write:
    """One write of the checkpoint: the document, then (first write, daily refresh) the head, then the
    deletion of the previous attempt's document."""

    key: str
    document: dict[str, Any]
    head: dict[str, Any] | None
    delete: str | None

    @staticmethod
    def merge(older: _Write, newer: _Write) -> _Write:
        """``newer`` replaces ``older`` waiting for the writer: its document, and whatever head or deletion
        ``older`` still had to do."""
        return _Write(newer.key, newer.document, newer.head or older.head, newer.delete or older.delete)


class _Wait(enum.Enum):
    """How long a write through the write-behind thread is waited for."""

    #: Return at once (``set()``).
    NONE = "none"
    #: Until the writer has taken it: every earlier write has landed (an ``iterate`` boundary).
    TAKEN = "taken"
    #: Until it is written (``flush()``, ``step()``, the end of a loop or of the task).
    WRITTEN = "written"


def _validate_interval(value: Any, name: str = "flush_interval") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise ConfigurationError(
            f"{name} must be a number of seconds >= 0 (0 writes every change at once), got {value!r}"
        )
    return float(value)


class Checkpoint:
    """The checkpoint of one attempt of one task instance.

    In a task, get it with :meth:`current`. In unit tests, build it over a store:
    ``Checkpoint(store, AttemptId(try_number=1))`` or use :mod:`airflow_resilience.testing`.
    """


    def __init__(
        self,
        store: CheckpointStore,
        attempt: AttemptId,
        *,
        keep_on_clear: bool = False,
        flush_interval: float = 0.0,
        write_behind: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._attempt = attempt
        self._clock = clock
        self._flush_interval = _validate_interval(flush_interval)
        self._lock = threading.RLock()
        self._dirty = False
        self._head_written = False
        self._last_flush = clock()
        self._head_written_at = clock()
        self._flush_soon = False
        self._fenced: StaleAttemptError | None = None
        self._untouched = False
        self._ledger: Ledger | None = None
        self._writer: WriteBehind[_Write] | None = None
        #: State-store writes made (documents and heads), counted when they land.
        self.writes = 0
        self.write_behind = write_behind

        head_raw = store.get(HEAD_KEY)
        head = None if head_raw is None else Head.from_json(head_raw)
        decision = plan(head, attempt, keep_on_clear=keep_on_clear)
        if decision is Plan.STALE:
            assert head is not None
            raise StaleAttemptError(
                f"attempt {attempt.try_number} is stale: attempt {head.try_number} of this task instance "
                "has already saved a checkpoint, so this attempt must not write. Nothing was overwritten"
            )
        self._values: dict[str, Any] = {}
        self._steps: dict[str, Any] = {}
        self._loops: dict[str, dict[str, Any]] = {}
        self._attempts: list[dict[str, Any]] = []
        generation = 0
        from_try = None
        if head is not None:
            generation = head.generation
            if decision in (Plan.RESUME, Plan.KEEP_AFTER_CLEAR):
                self._load(head)
                from_try = head.try_number
                self._head_written = head.try_number == attempt.try_number
            else:  # RERUN_AFTER_CLEAR
                generation += 1
        self._generation = generation
        self._previous_doc = (
            doc_key(head.try_number) if head is not None and head.try_number != attempt.try_number else None
        )
        self._attempts.append(
            # opened_at / written_at (wall clock): the work this attempt did that its checkpoint saved, for the
            # fleet report's "compute saved" (from the opening, so the runner's start-up is not counted).
            {"try_number": attempt.try_number, "plan": decision.value, "from_try": from_try,
             "opened_at": round(time.time(), 3)}
        )
        self.resumption = Resumption(
            plan=decision,
            from_try=from_try,
            generation=generation,
            loops={k: int(v.get("done", 0)) for k, v in self._loops.items()},
            steps=tuple(self._steps),
        )

    # ------------------------------------------------------------------ loading
    def _load(self, head: Head) -> None:
        key = doc_key(head.try_number)
        raw = self._store.get(key)
        fix = (
            "The saved state was left untouched. Inspect it with `airflow resilience checkpoint show "
            "DAG_ID RUN_ID TASK_ID`; to start over on purpose run `airflow resilience checkpoint reset "
            "DAG_ID RUN_ID TASK_ID` (or clear the task instance)"
        )
        if raw is None:
            raise CorruptCheckpointError(
                f"saved state key {HEAD_KEY!r} points to {key!r}, which is missing. {fix}"
            )
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise CorruptCheckpointError(
                f"saved state key {key!r} is not a format-{FORMAT} checkpoint document "
                f"(found {type(raw).__name__}). {fix}"
            )
        parts = {}
        for name, kind in (("values", dict), ("steps", dict), ("loops", dict), ("attempts", list)):
            part = raw.get(name, kind())
            if not isinstance(part, kind):
                raise CorruptCheckpointError(
                    f"saved state key {key!r}: field {name!r} is {type(part).__name__}, "
                    f"expected {kind.__name__}. {fix}"
                )
            parts[name] = part
        for loop_key, loop in parts["loops"].items():
            done = loop.get("done") if isinstance(loop, dict) else None
            if not isinstance(done, int) or isinstance(done, bool) or done < 0:
                raise CorruptCheckpointError(
                    f"saved state key {key!r}: position of iterate(key={loop_key!r}) is {loop!r}, expected "
                    f"{{'done': <count of finished items>}}. {fix}"
                )
        self._values = parts["values"]
        self._steps = parts["steps"]
        self._loops = parts["loops"]
        self._attempts = parts["attempts"]

    # ------------------------------------------------------------------ inside Airflow
    @classmethod
    def current(
        cls,
        *,
        keep_on_clear: bool | None = None,
        flush_interval: float | None = None,
        write_behind: bool | None = None,
    ) -> Checkpoint:
        """The checkpoint of the running task attempt (one object per attempt).

        :param keep_on_clear: resume from the saved checkpoint even after a user cleared the task instance
            (by default a clear means rerun: the next attempt starts with no checkpoint). Defaults to
            ``[resilience] checkpoint_keep_on_clear``.
        :param flush_interval: seconds between writes of ``set``/``iterate`` progress; 0 writes at once.
            Defaults to ``[resilience] checkpoint_flush_interval``.
        :param write_behind: write ``set``/``iterate`` progress on a background thread while the task goes
            on (see the module docstring for what a hard kill can then lose). Defaults to
            ``[resilience] checkpoint_write_behind``.
        """
        ckpt = context.current().current_checkpoint(keep_on_clear, flush_interval)
        if write_behind is not None:
            ckpt.write_behind = write_behind
        return ckpt

    # ------------------------------------------------------------------ values
    @property
    def attempt(self) -> AttemptId:
        return self._attempt

    @property
    def fenced(self) -> bool:
        """True once a write was refused because a newer attempt took over."""
        if self._fenced is not None:
            return True
        writer = self._writer
        return writer is not None and isinstance(writer.failed, StaleAttemptError)

    @property
    def write_behind(self) -> bool:
        """Whether ``set``/``iterate`` writes run on the background writer (settable; turning it off waits
        for the writer and raises what it failed with)."""
        return self._writer is not None

    @write_behind.setter
    def write_behind(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ConfigurationError(f"write_behind must be True or False, got {on!r}")
        with self._lock:
            if on and self._writer is None:
                self._writer = WriteBehind(self._apply, coalesce=_Write.merge)
            elif not on and self._writer is not None:
                self._writer.wait_idle()
                self._collect_failure()
                self._writer = None

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Attempts of this task instance that used the checkpoint (oldest first), this one last."""
        return [dict(a) for a in self._attempts]

    @property
    def context(self) -> Ledger:
        """The ledger: the earlier failed attempts of this task instance with their causes and evidence.

        Read once per attempt (the attempt-start hook has already recorded a silent death of the
        previous try when the task body runs).
        """
        if self._ledger is None:
            self._ledger = Ledger.from_json(self._store.get(LEDGER_KEY))
        return self._ledger

    def get(self, key: str, default: Any = None) -> Any:
        """The saved value of ``key`` (from this or an earlier attempt), or ``default``."""
        with self._lock:
            return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Save ``value`` (JSON) under ``key``; written at once or within ``flush_interval``.

        The value is checked here (JSON, size). With write-behind the write is handed to the background
        writer and ``set`` returns at once; an error of that write is raised by the next checkpoint call.
        """
        check_json(key, value)
        with self._lock:
            previous = self._values.get(key, _MISSING)
            self._values[key] = value
            try:
                self._check_size(key)
            except CheckpointTooLargeError:
                self._restore(self._values, key, previous)
                raise
            self._dirty = True
            self._maybe_flush()

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` once across all attempts and return its (JSON) result.

        On a later attempt the saved result is returned without calling ``fn``. The result is written as
        soon as ``fn`` returns.
        """
        with self._lock:
            if name in self._steps:
                return self._steps[name]
        result = fn(*args, **kwargs)
        check_json(f"step:{name}", result)
        with self._lock:
            self._steps[name] = result
            try:
                self._check_size(f"step:{name}")
            except CheckpointTooLargeError:
                del self._steps[name]
                raise
            self._dirty = True
            self.flush()
        return result

    def iterate(
        self, iterable: Iterable[T], *, key: str, flush_interval: float | None = None
    ) -> Iterator[T]:
        """Yield the items of ``iterable``, skipping those a previous attempt finished.

        An item counts as finished when the loop body returns to the loop for the next item. The
        iterable must produce the same items in the same order on every attempt (items are matched by
        position; the skipped ones are still drawn from the iterable, not processed). With write-behind the
        next item starts while the previous item's position is written; it waits only when the write before
        that one has not landed yet.
        """
        interval = self._flush_interval if flush_interval is None else _validate_interval(flush_interval)
        with self._lock:
            loop = self._loops.get(key)
            done = 0 if loop is None else int(loop["done"])
        index = done
        try:
            for item in itertools.islice(iterable, done, None):
                yield item
                index += 1
                with self._lock:
                    self._loops[key] = {"done": index}
                    self._dirty = True
                    self._maybe_flush(interval, _Wait.TAKEN)
            with self._lock:
                self._loops[key] = {"done": index, "complete": True}
                self._dirty = True
        finally:
            # Normal end, an exception in the loop body, or a break: what finished is written now.
            self.flush()

    def done_items(self, key: str) -> int:
        """How many items of ``iterate(key=...)`` are finished so far."""
        with self._lock:
            loop = self._loops.get(key)
            return 0 if loop is None else int(loop["done"])

    # ------------------------------------------------------------------ writing
    def request_flush(self) -> None:
        """Switch to writing at every item boundary from now on (the process is being stopped).

        Safe to call from a signal handler: it does no I/O, the next boundary writes.
        """
        self._flush_soon = True

    def leave_untouched(self) -> None:
        """Write nothing more from this attempt: its saved state cannot be used and is kept for inspection.

        Called before raising an error about the saved state (an unknown resume method, an unconfirmed
        submission), so that the end-of-task flush does not move that state into this attempt's document.
        """
        with self._lock:
            self._untouched = True

    def flush(self) -> None:
        """Write what is pending and wait until it is written (with write-behind: also the write in flight).

        Raises :class:`StaleAttemptError` when a newer attempt took over, and the error of a failed
        background write.
        """
        writer = self._writer
        if writer is not None and writer.on_thread():
            return  # a loop's generator finalized by the garbage collector on the writer's own thread
        with self._lock:
            if self._untouched:
                if self._writer is not None:
                    self._writer.wait_idle()  # what was handed over before stays; nothing new is written
                return
            self._write(_Wait.WRITTEN)

    def _maybe_flush(self, interval: float | None = None, wait: _Wait = _Wait.NONE) -> None:
        self._collect_failure()
        interval = self._flush_interval if interval is None else interval
        if interval <= 0 or self._flush_soon or self._clock() - self._last_flush >= interval:
            self._write(wait)

    def _write(self, wait: _Wait) -> None:
        """Write the current state, inline or through the writer (then waiting as ``wait`` says); under the lock."""
        self._collect_failure()
        if self._untouched:
            return
        if self._fenced is not None:
            raise StaleAttemptError(str(self._fenced))
        writer = self._writer
        if self._dirty or not self._head_written:
            job = self._next_write(copy=writer is not None)
            if writer is None:
                try:
                    self._apply(job)
                except StaleAttemptError as exc:
                    self._fenced = exc
                    raise
            else:
                writer.submit(job)
            self._handed_over(job)  # after the hand-over: a drain raised before it leaves the state pending
        if writer is None:
            return
        if wait is _Wait.WRITTEN or self._flush_soon:  # after a SIGTERM every write is waited for
            writer.wait_idle()
        elif wait is _Wait.TAKEN:
            writer.wait_taken()
        self._collect_failure()

    def _next_write(self, *, copy: bool) -> _Write:
        """The write of the current state. Changes nothing but the attempt's ``written_at``."""
        self._attempts[-1]["written_at"] = round(time.time(), 3)
        document = self._document()
        if copy:  # the writer sends it later: later changes must not reach it, half-made
            document = json.loads(json.dumps(document))
        head_due = not self._head_written or self._clock() - self._head_written_at > HEAD_REFRESH_SECONDS
        head = None
        if head_due:  # state-store rows expire counted from their last write: a long attempt rewrites it
            head = Head(
                try_number=self._attempt.try_number,
                max_tries=self._attempt.max_tries,
                clear_number=self._attempt.clear_number,
                generation=self._generation,
            ).to_json()
        return _Write(doc_key(self._attempt.try_number), document, head, self._previous_doc if head_due else None)

    def _apply(self, job: _Write) -> None:
        """Send one write to the store (inline, or on the writer's thread: it touches no checkpoint state
        but the ``writes`` counter)."""
        self._store.set(job.key, job.document)
        self.writes += 1
        if job.head is not None:
            self._store.set(HEAD_KEY, job.head)
            self.writes += 1
            if job.delete is not None:
                # The old document is superseded by the one just written; drop it to keep one.
                self._store.delete(job.delete)

    def _handed_over(self, job: _Write) -> None:
        self._dirty = False
        self._last_flush = self._clock()
        if job.head is not None:
            self._head_written = True
            self._head_written_at = self._clock()
            if job.delete is not None:
                self._previous_doc = None

    def _collect_failure(self) -> None:
        """Raise the error of a failed background write (once; a refusal also marks this attempt fenced,
        so every later write raises it too). What it was writing is pending again."""
        writer = self._writer
        if writer is None:
            return
        failure = writer.take_failure()
        if failure is None:
            return
        job, exc, waiting = failure
        if isinstance(exc, StaleAttemptError):
            self._fenced = exc
        self._dirty = True
        for lost in (job, waiting):
            if lost is not None and lost.head is not None:
                self._head_written = False
                if lost.delete is not None:
                    self._previous_doc = lost.delete
        raise exc

    def _document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "try_number": self._attempt.try_number,
            "generation": self._generation,
            "values": self._values,
            "steps": self._steps,
            "loops": self._loops,
            "attempts": self._attempts,
        }

    def _check_size(self, key: str) -> None:
        limit = self._store.max_value_bytes
        if limit <= 0:
            return
        size = encoded_size(self._document())
        if size > limit:
            raise CheckpointTooLargeError(
                f"checkpoint key {key!r}: saving it would make this task's checkpoint {size} bytes, over the "
                f"state store limit of {limit} bytes ([state_store] max_value_storage_bytes). Nothing was "
                "saved and earlier checkpoints are intact. Save a reference (a path or URI) to the data "
                "instead of the data, or raise the limit"
            )

    @staticmethod
    def _restore(mapping: dict[str, Any], key: str, previous: Any) -> None:
        if previous is _MISSING:
            mapping.pop(key, None)
        else:
            mapping[key] = previous
