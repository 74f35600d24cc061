"""In-memory checkpoints for unit tests of your own tasks (no Airflow needed).

.. code-block:: python

    from airflow_resilience.testing import CheckpointEnvironment

    def test_resumes_after_kill():
        env = CheckpointEnvironment(retries=2)
        with env.attempt():                      # attempt 1: Checkpoint.current() is in-memory here
            with pytest.raises(Boom):
                my_task_function()               # your task body, raising part-way
        with env.attempt() as ckpt:              # attempt 2 resumes
            my_task_function()
        assert ckpt.done_items("parts") == 10

The store follows the same rules as Airflow's: one store per task instance shared by all attempts, only
the current attempt may write, values are stored as JSON text, and the same size limit applies.
``env.clear()`` plays a user clearing the task instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow_resilience.attempt import AttemptId
from airflow_resilience import context
from airflow_resilience.checkpoint import Checkpoint
from airflow_resilience.store import DEFAULT_MAX_VALUE_BYTES, MemoryTaskStore


class CheckpointEnvironment:
    """One task instance with an in-memory state store; each :meth:`attempt` is a new try."""

    def __init__(self, *, retries: int = 0, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.store = MemoryTaskStore(max_value_bytes=max_value_bytes)
        self.retries = retries
        self.try_number = 0
        self.max_tries = retries
        self.clear_number = 0

    def new_checkpoint(self, **kwargs: Any) -> Checkpoint:
        """Start the next try and return its checkpoint (without installing it as current)."""
        self.try_number += 1
        view = self.store.start_attempt(self.try_number)
        attempt = AttemptId(
            try_number=self.try_number, max_tries=self.max_tries, clear_number=self.clear_number
        )
        return Checkpoint(view, attempt, **kwargs)

    @contextmanager
    def attempt(self, **kwargs: Any) -> Iterator[Checkpoint]:
        """Run the next try: inside the block ``Checkpoint.current()`` returns its checkpoint."""
        ckpt = self.new_checkpoint(**kwargs)
        rt = context.AttemptRuntime(open_checkpoint=lambda *_: ckpt, label=f"unit test try {self.try_number}")
        rt.current_checkpoint(None, None)  # registered as the attempt's checkpoint (what the SIGTERM flush sees)
        token = context.begin(rt)
        try:
            yield ckpt
        finally:
            context.end(token)
            try:
                ckpt.flush()  # what the task-end listener does in Airflow
            except Exception:
                pass

    def clear(self) -> None:
        """Play a user clearing the task instance (Airflow moves clear_number and max_tries)."""
        self.clear_number += 1
        self.max_tries = self.try_number + self.retries

    def saved(self) -> dict[str, Any]:
        """Everything in the store, decoded."""
        return self.store.snapshot()
