"""The running attempt as the pure core sees it: one :class:`AttemptRuntime` in a ``ContextVar``.

The core (``Checkpoint.current()``, ``Watermark(...)`` without a backend, the SIGTERM flush, the end of
task) never imports Airflow or the glue package. Whoever hosts an attempt hands it an
:class:`AttemptRuntime` instead:

* in a real task, the plugin's task-runner listener (``on_task_instance_running``, which Airflow calls
  before ``pre_execute`` and ``execute``) sets one built by :mod:`airflow_resilience.airflow.runtime`, and
  the listener's end-of-task hooks use it and clear it;
* in users' unit tests, :class:`airflow_resilience.testing.CheckpointEnvironment` and
  :meth:`airflow_resilience.watermark.MemoryAttempt.running` set one over in-memory stores.

The object is set *before* Airflow copies the context to run ``execute`` (``contextvars.copy_context()``
in the task runner), and everything the attempt opens is registered on the object itself (not on the
variable), so the end-of-task listener, which runs outside that copy, sees what ``execute`` opened.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_resilience.errors import NoTaskContextError

if TYPE_CHECKING:
    from airflow_resilience.checkpoint import Checkpoint
    from airflow_resilience.watermark import Watermark, WatermarkBackend

NO_RUNTIME = (
    "Checkpoint.current() and Watermark(...) without a backend work only inside a running Airflow task "
    "(the airflow-resilience plugin's task listener hands them the attempt); in unit tests use "
    "airflow_resilience.testing.CheckpointEnvironment or MemoryWatermarks().attempt(...).running()"
)


def _no_watermarks() -> WatermarkBackend:
    raise NoTaskContextError(NO_RUNTIME)


def default_watermark_wait() -> tuple[float, float]:
    """``[resilience] watermark_wait_timeout`` and ``watermark_poll_interval`` as declared."""
    from airflow_resilience.config import Settings

    return Settings.watermark_wait_timeout, Settings.watermark_poll_interval  # type: ignore[return-value]


@dataclass(eq=False)
class AttemptRuntime:
    """What the core needs from the host of one attempt, and the objects that attempt has open.

    :param open_checkpoint: ``(keep_on_clear, flush_interval) -> Checkpoint`` — a new checkpoint of this
        attempt over its task instance's store (``None`` arguments mean "the configured default").
    :param watermark_backend: ``() -> WatermarkBackend`` — this attempt's watermark backend.
    :param watermark_wait: ``() -> (wait_timeout, poll_interval)`` — the configured defaults.
    :param clock: monotonic seconds, for waits.
    """

    open_checkpoint: Callable[[bool | None, float | None], Checkpoint] | None = None
    watermark_backend: Callable[[], WatermarkBackend] = _no_watermarks
    watermark_wait: Callable[[], tuple[float, float]] = default_watermark_wait
    clock: Callable[[], float] = time.monotonic
    #: A label for logs and errors ("dag.task run try 2", "unit test").
    label: str = ""
    # ---- the registry of what this attempt has open
    checkpoint: Checkpoint | None = None
    checkpoints: weakref.WeakSet[Checkpoint] = field(default_factory=weakref.WeakSet)
    watermarks: list[Watermark] = field(default_factory=list)
    end_actions: list[Callable[[bool], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current_checkpoint(self, keep_on_clear: bool | None, flush_interval: float | None) -> Checkpoint:
        """The attempt's checkpoint: opened on the first call, the same object afterwards."""
        with self.lock:
            if self.checkpoint is None:
                if self.open_checkpoint is None:
                    raise NoTaskContextError(NO_RUNTIME)
                self.checkpoint = self.open_checkpoint(keep_on_clear, flush_interval)
                self.checkpoints.add(self.checkpoint)
            return self.checkpoint

    def take_end_actions(self) -> list[Callable[[bool], None]]:
        """The registered end-of-task actions, each handed out once."""
        actions = list(self.end_actions)
        self.end_actions.clear()
        return actions


_runtime: contextvars.ContextVar[AttemptRuntime | None] = contextvars.ContextVar(
    "airflow_resilience_attempt", default=None
)


def current() -> AttemptRuntime:
    """The runtime of the running attempt; :class:`NoTaskContextError` when nothing hosts one."""
    rt = _runtime.get()
    if rt is None:
        raise NoTaskContextError(NO_RUNTIME)
    return rt


def current_or_none() -> AttemptRuntime | None:
    return _runtime.get()


def current_or_detached() -> AttemptRuntime:
    """The running attempt's runtime or, where nothing hosts one (a unit test handing ``Watermark`` an
    explicit backend), a detached one set in this context so later calls share its registry."""
    rt = _runtime.get()
    if rt is None:
        rt = AttemptRuntime(label="detached")
        _runtime.set(rt)
    return rt


def begin(rt: AttemptRuntime) -> contextvars.Token:
    """Make ``rt`` the running attempt in this context (the host calls this when an attempt starts)."""
    return _runtime.set(rt)


def end(token: contextvars.Token | None = None) -> None:
    """The attempt is over: restore what was there before ``begin`` (or nothing)."""
    if token is not None:
        try:
            _runtime.reset(token)
            return
        except ValueError:  # the token was made in another context: clear instead
            pass
    _runtime.set(None)


@contextmanager
def running(rt: AttemptRuntime) -> Iterator[AttemptRuntime]:
    """``with running(rt):`` — ``rt`` is the running attempt inside the block."""
    token = begin(rt)
    try:
        yield rt
    finally:
        end(token)


def open_checkpoints() -> list[Any]:
    """The checkpoints the running attempt opened (none outside an attempt)."""
    rt = _runtime.get()
    return [] if rt is None else list(rt.checkpoints)
