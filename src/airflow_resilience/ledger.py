"""The ledger: per task instance, the append-only history of attempts and their causes (pure values).

It is the *execution context* handed to the next attempt, and the input of the budget decision. It is
stored as JSON in the task instance's state store (key ``resilience:ledger``) by the Airflow edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_resilience.causes import FailureCause, FailureKind, Reason

LEDGER_KEY = "resilience:ledger"


@dataclass(frozen=True)
class AttemptRecord:
    """One ended attempt."""

    try_number: int
    cause: FailureCause
    #: The budget verdict taken for it (``grant``, ``stock``, ``exhausted``).
    verdict: str
    #: ISO-8601 UTC time the failure was recorded.
    at: str = ""
    #: Whether the attempt had saved a checkpoint (so the next one could resume).
    checkpoint: bool = False
    #: The task instance's ``max_tries`` when recorded: it moves on every clear, so it tells the
    #: generation (budgets and application retries start over after a clear, as in stock Airflow).
    max_tries: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "try_number": self.try_number,
            "cause": self.cause.to_json(),
            "verdict": self.verdict,
            "at": self.at,
            "checkpoint": self.checkpoint,
            "max_tries": self.max_tries,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AttemptRecord:
        return cls(
            try_number=int(raw["try_number"]),
            cause=FailureCause.from_json(raw["cause"]),
            verdict=str(raw["verdict"]),
            at=str(raw.get("at", "")),
            checkpoint=bool(raw.get("checkpoint", False)),
            max_tries=raw.get("max_tries") if isinstance(raw.get("max_tries"), int) else None,
        )


@dataclass(frozen=True)
class Ledger:
    """Attempts of one task instance, oldest first."""

    attempts: tuple[AttemptRecord, ...] = field(default_factory=tuple)

    def append(self, record: AttemptRecord) -> Ledger:
        return Ledger(self.attempts + (record,))

    def since_clear(self, max_tries: int | None) -> Ledger:
        """The records of the current generation: those written with this ``max_tries`` (or unknown)."""
        if max_tries is None:
            return self
        return Ledger(tuple(a for a in self.attempts if a.max_tries in (None, max_tries)))

    @property
    def infra_grants(self) -> int:
        return sum(1 for a in self.attempts if a.verdict == "grant")

    def trailing_same_reason(self, reason: Reason) -> int:
        """How many of the most recent attempts, in a row, ended with ``reason`` (infrastructure)."""
        count = 0
        for record in reversed(self.attempts):
            if record.cause.kind is FailureKind.INFRASTRUCTURE and record.cause.reason is reason:
                count += 1
            else:
                break
        return count

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "attempts": [a.to_json() for a in self.attempts]}

    @classmethod
    def from_json(cls, raw: Any) -> Ledger:
        if raw is None:
            return cls()
        from airflow_resilience.errors import CorruptCheckpointError

        try:
            if raw.get("format") != 1:
                raise ValueError(f"format {raw.get('format')!r}")
            return cls(tuple(AttemptRecord.from_json(a) for a in raw["attempts"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptCheckpointError(
                f"saved state key {LEDGER_KEY!r} is damaged ({exc}); inspect it with `airflow resilience "
                "checkpoint show`, delete the key to start a new ledger"
            ) from None
