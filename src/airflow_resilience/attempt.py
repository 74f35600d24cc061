"""Which attempt is running, and what it should do with saved checkpoint state (pure; no Airflow import).

A task instance keeps one task state store across all its attempts, and Airflow 3.3.2 keeps that store
even when a user *clears* the task instance. So each attempt decides, from the *head* record that the
latest writing attempt left and from its own identity, whether to resume, start fresh, or stop:

* no head                         -> FRESH
* head written by a newer try     -> STALE (this attempt is a zombie: refuse to write)
* head from this try              -> RESUME (same attempt re-entered, e.g. after a reschedule)
* the task instance was cleared   -> FRESH in a new generation (clear means rerun), or RESUME when the
                                     author opted out with ``keep_on_clear``
* otherwise (a retry)             -> RESUME

A clear is recognised by two marks Airflow moves in ``clear_task_instances``: the dag run's
``clear_number`` (incremented by every clear of any task in the run) and the task instance's
``max_tries`` (reset to ``try_number + retries`` for the cleared task instance only). Both must move: a
clear of *another* task in the same run moves only the first, and a retry moves neither.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from airflow_resilience.errors import CorruptCheckpointError

HEAD_KEY = "resilience:checkpoint:head"
FORMAT = 1


def doc_key(try_number: int) -> str:
    """State-store key of the checkpoint document written by one attempt (a compatibility contract)."""
    return f"resilience:checkpoint:try-{try_number}"


@dataclass(frozen=True)
class AttemptId:
    """Identity of one attempt of a task instance."""

    #: Airflow's ``try_number`` of this attempt (1 for the first).
    try_number: int
    #: ``max_tries`` of the task instance as this attempt sees it; moves on a clear.
    max_tries: int = 0
    #: ``clear_number`` of the dag run; moves on any clear of the run.
    clear_number: int = 0
    #: Airflow's task instance id of this try (a new one per try), for evidence only.
    ti_id: str = ""


class Plan(str, enum.Enum):
    """What an attempt does with the saved checkpoint."""

    FRESH = "fresh"
    RESUME = "resume"
    RERUN_AFTER_CLEAR = "rerun_after_clear"
    KEEP_AFTER_CLEAR = "keep_after_clear"
    STALE = "stale"


@dataclass(frozen=True)
class Head:
    """The pointer to the latest checkpoint document of a task instance."""

    try_number: int
    max_tries: int
    clear_number: int
    generation: int

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "try_number": self.try_number,
            "max_tries": self.max_tries,
            "clear_number": self.clear_number,
            "generation": self.generation,
            "doc": doc_key(self.try_number),
        }

    @classmethod
    def from_json(cls, raw: Any) -> Head:
        fix = (
            "Inspect it with `airflow resilience checkpoint show DAG_ID RUN_ID TASK_ID` and, to start this "
            "task instance from scratch on purpose, run `airflow resilience checkpoint reset ...`"
        )
        if not isinstance(raw, dict):
            raise CorruptCheckpointError(
                f"saved state key {HEAD_KEY!r} holds {type(raw).__name__}, expected an object. {fix}"
            )
        if raw.get("format") != FORMAT:
            raise CorruptCheckpointError(
                f"saved state key {HEAD_KEY!r} has format {raw.get('format')!r}; this version of "
                f"airflow-resilience reads format {FORMAT}. {fix}"
            )
        try:
            return cls(
                try_number=_int(raw, "try_number"),
                max_tries=_int(raw, "max_tries"),
                clear_number=_int(raw, "clear_number"),
                generation=_int(raw, "generation"),
            )
        except (KeyError, TypeError) as exc:
            raise CorruptCheckpointError(f"saved state key {HEAD_KEY!r} is damaged ({exc}). {fix}") from None


def _int(raw: dict[str, Any], name: str) -> int:
    value = raw[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"field {name!r} is {value!r}, not an integer")
    return value


def was_cleared(head: Head, attempt: AttemptId) -> bool:
    """True when the task instance was cleared by a user since ``head`` was written."""
    return attempt.clear_number != head.clear_number and attempt.max_tries != head.max_tries


def plan(head: Head | None, attempt: AttemptId, *, keep_on_clear: bool = False) -> Plan:
    """Decide what ``attempt`` does with the checkpoint ``head`` points to."""
    if head is None:
        return Plan.FRESH
    if head.try_number > attempt.try_number:
        return Plan.STALE
    if head.try_number == attempt.try_number:
        return Plan.RESUME
    if was_cleared(head, attempt):
        return Plan.KEEP_AFTER_CLEAR if keep_on_clear else Plan.RERUN_AFTER_CLEAR
    return Plan.RESUME
