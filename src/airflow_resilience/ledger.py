"""The ledger: per task instance, the append-only history of attempts and their causes (pure values).

It is the *execution context* handed to the next attempt, and the input of the budget decision. It is
stored as JSON in the task instance's state store (key ``resilience:ledger``) by the Airflow edge.

Bounded: it keeps the newest :data:`LEDGER_LIMIT` records (older generations go first), and a record's
summary is cut at :data:`SUMMARY_LIMIT` characters, so a ledger stays far below the state store's 64 KB
value limit however often a task instance fails or is cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_resilience.causes import FailureCause, FailureKind, Reason

LEDGER_KEY = "resilience:ledger"
#: Records kept (newest last). Budgets count within them: ``infra_retries`` is validated to stay below.
LEDGER_LIMIT = 32
SUMMARY_LIMIT = 300
#: Verdicts that end a try (a ``pending`` record is the runner's word, waiting for the server's verdict).
ENDING_VERDICTS = frozenset({"grant", "stock", "exhausted", "manual"})


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
    #: The task instance's ``max_tries`` when recorded (before this record's verdict).
    max_tries: int | None = None
    #: ``max_tries`` after the verdict: one more than ``max_tries`` for a grant, the same otherwise.
    max_tries_after: int | None = None
    #: The dag run's ``clear_number`` when recorded. With ``max_tries`` it tells the generation: a clear moves
    #: both (budgets start over after a clear, as application retries do in stock Airflow).
    clear_number: int | None = None
    #: The circuit breaker refused the grant (written only when true).
    breaker: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {
            "try_number": self.try_number,
            "cause": self.cause.to_json(),
            "verdict": self.verdict,
            "at": self.at,
            "checkpoint": self.checkpoint,
            "max_tries": self.max_tries,
            "max_tries_after": self.max_tries_after,
            "clear_number": self.clear_number,
        }
        if self.breaker:
            out["breaker"] = True
        return out

    @property
    def after(self) -> int | None:
        return self.max_tries_after if self.max_tries_after is not None else self.max_tries

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AttemptRecord:
        return cls(
            try_number=int(raw["try_number"]),
            cause=FailureCause.from_json(raw["cause"]),
            verdict=str(raw["verdict"]),
            at=str(raw.get("at", "")),
            checkpoint=bool(raw.get("checkpoint", False)),
            max_tries=_opt_int(raw.get("max_tries")),
            max_tries_after=_opt_int(raw.get("max_tries_after")),
            clear_number=_opt_int(raw.get("clear_number")),
            breaker=raw.get("breaker") is True,
        )


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Ledger:
    """Attempts of one task instance, oldest first."""

    attempts: tuple[AttemptRecord, ...] = field(default_factory=tuple)

    def append(self, record: AttemptRecord) -> Ledger:
        """This ledger with ``record`` last: it replaces a ``pending`` record of the same try, and only the
        newest :data:`LEDGER_LIMIT` records are kept."""
        from dataclasses import replace

        if len(record.cause.summary) > SUMMARY_LIMIT:
            cut = replace(record.cause, summary=record.cause.summary[: SUMMARY_LIMIT - 1] + "…")
            record = replace(record, cause=cut)
        kept = tuple(a for a in self.attempts if not (a.try_number == record.try_number and a.verdict == "pending"))
        return Ledger((kept + (record,))[-LEDGER_LIMIT:])

    def record_for(self, try_number: int) -> AttemptRecord | None:
        """The newest record of ``try_number``, if any."""
        for record in reversed(self.attempts):
            if record.try_number == try_number:
                return record
        return None

    def since_clear(self, max_tries: int | None, clear_number: int | None = None) -> Ledger:
        """The records of the current generation: the newest records back to the first clear.

        Walking back from the newest, each record's ``max_tries`` after its verdict must be the value the
        next one started from (a grant raises it by one, nothing else of ours moves it). A record that breaks
        that chain *and* was written under another ``clear_number`` of the dag run comes from before a
        clear: it and everything older belong to an earlier generation. (A clear moves both marks; a
        clear of another task of the run moves only ``clear_number``.)
        """
        if max_tries is None:
            return self
        kept: list[AttemptRecord] = []
        expected = max_tries
        for record in reversed(self.attempts):
            after = record.after
            if after is None:  # written without max_tries (unknown): kept
                kept.append(record)
                continue
            chained = after == expected
            same_clear = clear_number is not None and record.clear_number == clear_number
            if not chained and not same_clear:
                break
            kept.append(record)
            expected = record.max_tries if record.max_tries is not None else after
        return Ledger(tuple(reversed(kept)))

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
