"""Write-behind for checkpoints: one background thread writes the latest state while the task computes.

:class:`WriteBehind` runs ``write(job)`` for the jobs a :class:`~airflow_resilience.checkpoint.Checkpoint`
hands it, on one thread, **one at a time**. A job handed over while another is being written waits in a
single slot; a newer job replaces the one waiting there (the two are merged by ``coalesce``), so only the
latest state is sent next. The caller chooses how far it lets the writer fall behind:

* :meth:`submit` returns at once (``set()``: several values set during one write go out as one);
* :meth:`wait_taken` returns once the job handed last has been taken by the thread, which means every job
  before it has been written (an ``iterate`` boundary: the loop never runs two items ahead of the store);
* :meth:`wait_idle` returns once everything handed over is written (``flush()``, ``step()``, a drain, the
  end of the task).

A failed write is kept, not logged and dropped: the thread takes no further job until the owner has
collected the failure with :meth:`take_failure` (the checkpoint raises it at its next call), and the waits
return as soon as a failure is there.

Thread safety of the store: in a real task the store sends its requests through the Task SDK's
``SUPERVISOR_COMMS`` (``CommsDecoder.send``), which holds its own ``threading.Lock`` from sending the request
to reading the answer, so a write from this thread and a request of the task's main thread never
interleave their frames (``tests/unit/test_checkpoint_writer.py`` checks that lock on the installed SDK,
``tests/airflow/test_checkpoint_airflow.py`` runs both threads against a real supervisor).

Pure: no Airflow import. The thread is a daemon that ends after ``linger`` idle seconds (a new one starts
with the next job), so a finished attempt leaves no thread behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

J = TypeVar("J")


class WriteBehind(Generic[J]):
    """A single-slot, single-thread writer (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[J], None],
        *,
        coalesce: Callable[[J, J], J] = lambda older, newer: newer,
        name: str = "airflow-resilience-checkpoint-writer",
        linger: float = 2.0,
    ) -> None:
        self._write = write
        self._coalesce = coalesce
        self._name = name
        self._linger = linger
        self._cond = threading.Condition(threading.Lock())
        self._waiting: J | None = None
        self._has_waiting = False
        self._busy = False
        self._failure: tuple[J, BaseException] | None = None
        self._thread: threading.Thread | None = None
        #: Jobs written (for tests and benchmarks).
        self.written = 0

    # ----------------------------------------------------------------------------- the owner's side
    def submit(self, job: J) -> None:
        """Hand ``job`` over; it replaces (merged with) a job still waiting. Returns at once."""
        with self._cond:
            if self._has_waiting:
                job = self._coalesce(self._waiting, job)  # type: ignore[arg-type]
            self._waiting, self._has_waiting = job, True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_taken(self) -> None:
        """Wait until the waiting job (if any) has been taken: every job before it is then written."""
        with self._cond:
            while self._has_waiting and self._failure is None:
                self._cond.wait()

    def wait_idle(self) -> None:
        """Wait until every job handed over is written (or a write failed)."""
        with self._cond:
            while (self._has_waiting or self._busy) and self._failure is None:
                self._cond.wait()

    def on_thread(self) -> bool:
        """True when called from the writer's own thread."""
        thread = self._thread
        return thread is not None and thread is threading.current_thread()

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing being written."""
        with self._cond:
            return not self._has_waiting and not self._busy

    @property
    def failed(self) -> BaseException | None:
        """The error of a failed write not yet collected."""
        with self._cond:
            return None if self._failure is None else self._failure[1]

    def take_failure(self) -> tuple[J, BaseException, J | None] | None:
        """``(failed job, its error, job that was waiting)`` once, and the writer accepts work again; the
        waiting job is dropped (the owner writes its current state afterwards, which contains it)."""
        with self._cond:
            if self._failure is None:
                return None
            job, exc = self._failure
            waiting = self._waiting if self._has_waiting else None
            self._failure, self._waiting, self._has_waiting = None, None, False
            self._cond.notify_all()
            return job, exc, waiting

    # ------------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_waiting or self._failure is not None:
                    if not self._cond.wait(self._linger) and (not self._has_waiting or self._failure is not None):
                        self._thread = None  # idle: end; the next submit starts a new thread
                        return
                job = self._waiting
                self._waiting, self._has_waiting, self._busy = None, False, True
                self._cond.notify_all()
            error: BaseException | None = None
            try:
                self._write(job)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - kept for the owner, raised at its next call
                error = exc
            with self._cond:
                self._busy = False
                if error is None:
                    self.written += 1
                else:
                    self._failure = (job, error)  # type: ignore[assignment]
                self._cond.notify_all()
