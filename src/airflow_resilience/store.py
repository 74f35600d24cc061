"""Where checkpoints live: a small key/value interface, and an in-memory implementation.

``Checkpoint`` talks only to :class:`CheckpointStore`. In a running Airflow task the implementation is
:class:`airflow_resilience.airflow.store.TaskStateStore` (Airflow's AIP-103 task state store, which is
scoped to one task instance and survives its retries). :class:`MemoryTaskStore` is the same contract in
memory, with the same fencing rule the Airflow API server applies, for unit tests of the pure core and of
users' own tasks (see :mod:`airflow_resilience.testing`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_resilience.errors import StaleAttemptError

#: Airflow's default ``[state_store] max_value_storage_bytes``.
DEFAULT_MAX_VALUE_BYTES = 65535


class CheckpointStore(Protocol):
    """The key/value store of one task instance, as seen by one attempt."""

    #: Largest accepted value, as ``len(json.dumps(value))``; 0 means no limit.
    max_value_bytes: int

    def get(self, key: str) -> Any | None:
        """The stored JSON value, or ``None`` when the key is absent."""

    def set(self, key: str, value: Any) -> None:
        """Store a JSON value. Raises ``StaleAttemptError`` when this attempt is no longer current."""

    def delete(self, key: str) -> None:
        """Remove a key; absent keys are fine."""


@dataclass
class MemoryTaskStore:
    """An in-memory task state store for one task instance, shared by all its attempts.

    Like Airflow's API server, it only accepts writes from the *current* attempt: once
    :meth:`start_attempt` has moved on to a newer try, writes through an older attempt's view are refused.
    Values are stored as JSON text, so what is read back is what a real store would return.
    """

    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    current_try: int = 0
    data: dict[str, str] = field(default_factory=dict)
    writes: int = 0

    def start_attempt(self, try_number: int) -> MemoryAttemptView:
        """Make ``try_number`` the current attempt and return its view of the store."""
        if try_number < self.current_try:
            raise ValueError(f"try_number {try_number} is older than the current try {self.current_try}")
        self.current_try = try_number
        return MemoryAttemptView(self, try_number)

    def view(self, try_number: int) -> MemoryAttemptView:
        """A view for an attempt without making it current (to play a stale attempt)."""
        return MemoryAttemptView(self, try_number)

    def snapshot(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.data.items()}


@dataclass
class MemoryAttemptView:
    """One attempt's view of a :class:`MemoryTaskStore`."""

    backend: MemoryTaskStore
    try_number: int

    @property
    def max_value_bytes(self) -> int:
        return self.backend.max_value_bytes

    def _check_current(self, key: str) -> None:
        if self.try_number != self.backend.current_try:
            raise StaleAttemptError(
                f"write of {key!r} refused: attempt {self.try_number} was superseded by attempt "
                f"{self.backend.current_try} of the same task instance"
            )

    def get(self, key: str) -> Any | None:
        raw = self.backend.data.get(key)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self._check_current(key)
        self.backend.data[key] = json.dumps(copy.deepcopy(value))
        self.backend.writes += 1

    def delete(self, key: str) -> None:
        self._check_current(key)
        self.backend.data.pop(key, None)
