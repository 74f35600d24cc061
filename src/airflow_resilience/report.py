"""What infrastructure cost and what the package saved (pure values: the fleet view, ``airflow resilience
report`` and the task-instance tab's budget lines read the same numbers from here).

Input: one :class:`FailedAttempt` per ledger record (a failed try and its verdict), with what Airflow
recorded about that try (start, end, pool, host) and what its checkpoint recorded (its last write, and
whether a later try resumed from it). Output: plain JSON-able dicts.

Compute seconds, per failed try (``None`` fields mean unknown, and an unknown try counts 0 in both):

* **saved** — the work the try had checkpointed that a later try did not redo: from the moment the try
  opened its checkpoint to its last checkpoint write, when a later try resumed from its checkpoint; 0
  otherwise;
* **redone** — the rest of the try: its whole run time (start to end) less what was saved — the work lost
  with it, and its start-up, which the next try pays again.

These are wall-clock seconds of the failed try (its runner ran them), not CPU time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_resilience.causes import FailureKind
from airflow_resilience.ledger import Ledger

KINDS = ("infrastructure", "application", "timeout", "manual", "unknown")
VERDICTS = ("grant", "stock", "exhausted", "manual", "pending")
#: Windows the fleet view offers; ``report --since`` takes any ``<n><m|h|d|w>``.
WINDOWS = ("1h", "24h", "7d", "30d")
_WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Longest window: a year (the ledger keeps at most 32 records per task instance anyway).
MAX_WINDOW = timedelta(days=366)
TOP = 10


def parse_window(text: str) -> timedelta:
    """``"7d"`` -> 7 days. Units: m(inutes), h(ours), d(ays), w(eeks); at most a year."""
    match = _WINDOW.match(str(text))
    if not match:
        raise ValueError(
            f"since={text!r} is not a window: write a number and a unit m, h, d or w, e.g. 1h, 24h, 7d, 30d"
        )
    window = timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})
    if window <= timedelta(0) or window > MAX_WINDOW:
        raise ValueError(f"since={text!r}: the window must be more than 0 and at most 366 days")
    return window


@dataclass(frozen=True)
class FailedAttempt:
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    kind: str
    reason: str
    verdict: str
    #: When the failure was recorded (the ledger record's ``at``).
    at: datetime | None
    breaker: bool = False
    pool: str | None = None
    hostname: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    #: When the try opened its checkpoint, and its last checkpoint write (``None``: none, or not known).
    checkpoint_opened_at: datetime | None = None
    checkpoint_written_at: datetime | None = None
    #: Whether a later try resumed from this try's checkpoint.
    resumed: bool = False

    @property
    def seconds(self) -> tuple[float, float]:
        """``(redone, saved)`` compute seconds of this try (see the module docstring)."""
        if self.started_at is None or self.ended_at is None or self.ended_at < self.started_at:
            return 0.0, 0.0
        total = (self.ended_at - self.started_at).total_seconds()
        written = self.checkpoint_written_at
        opened = self.checkpoint_opened_at or self.started_at
        if self.resumed and written is not None and self.started_at <= opened <= written <= self.ended_at:
            saved = (written - opened).total_seconds()
            return total - saved, saved
        return (self.ended_at - self.started_at).total_seconds(), 0.0


def _top(counter: Counter, n: int = TOP) -> list[dict[str, Any]]:
    return [{"name": name, "count": count} for name, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def summarize(
    attempts: Iterable[FailedAttempt],
    *,
    since: datetime,
    until: datetime,
    window: str = "",
    dag_id: str | None = None,
) -> dict[str, Any]:
    """The fleet numbers over ``[since, until]`` (attempts recorded outside it, or pending, are left out)."""
    kept = [
        a
        for a in attempts
        if a.verdict != "pending" and (a.at is None or since <= a.at <= until) and (dag_id is None or a.dag_id == dag_id)
    ]
    kinds = Counter(a.kind if a.kind in KINDS else "unknown" for a in kept)
    verdicts = Counter(a.verdict for a in kept)
    redone = saved = 0.0
    for a in kept:
        r, s = a.seconds
        redone += r
        saved += s
    totals: dict[str, Any] = {
        "failed_attempts": len(kept),
        **{kind: kinds.get(kind, 0) for kind in KINDS},
        "grants": verdicts.get("grant", 0),
        "stock": verdicts.get("stock", 0),
        "exhausted": verdicts.get("exhausted", 0),
        "breakers_opened": sum(1 for a in kept if a.breaker),
        # A grant is a retry of the user's that infrastructure did not spend.
        "retries_kept": verdicts.get("grant", 0),
        "redone_seconds": round(redone, 3),
        "saved_seconds": round(saved, 3),
    }
    reasons = Counter((a.kind, a.reason) for a in kept)
    by_day: dict[str, Counter] = {}
    for a in kept:
        if a.at is not None:
            by_day.setdefault(a.at.astimezone(timezone.utc).date().isoformat(), Counter())[
                a.kind if a.kind in KINDS else "unknown"
            ] += 1
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "window": window,
        "dag_id": dag_id,
        "totals": totals,
        "by_reason": [
            {"kind": k, "reason": r, "count": c} for (k, r), c in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "by_verdict": [{"verdict": v, "count": verdicts[v]} for v in VERDICTS if verdicts.get(v)],
        "top": {
            "dags": _top(Counter(a.dag_id for a in kept)),
            "tasks": _top(Counter(f"{a.dag_id}.{a.task_id}" for a in kept)),
            "pools": _top(Counter(a.pool for a in kept if a.pool)),
            "hosts": _top(Counter(a.hostname for a in kept if a.hostname)),
        },
        "by_day": [{"day": day, **{kind: c.get(kind, 0) for kind in KINDS}} for day, c in sorted(by_day.items())],
    }


def budgets(
    records: Sequence[Any],
    *,
    infra_limit: int,
    breaker_threshold: int,
    retries: int | None,
) -> dict[str, Any]:
    """What is left of each budget of a task instance, from its ledger records of the current generation
    (:class:`~airflow_resilience.ledger.AttemptRecord`). ``retries``: the task's ``retries`` (``None`` when
    the DAG is not known)."""
    ended = [r for r in records if r.verdict != "pending"]
    grants = sum(1 for r in ended if r.verdict == "grant")
    # A stock verdict on a failure that was not the last spent one of the user's retries; the last stock
    # failure may have been the final one (no retry left to spend).
    stock = [r for r in ended if r.verdict == "stock"]
    last = ended[-1] if ended and ended[-1].cause.kind is FailureKind.INFRASTRUCTURE else None
    last_reason = last.cause.reason if last is not None else None
    in_a_row = Ledger(tuple(ended)).trailing_same_reason(last_reason) if last_reason is not None else 0
    out: dict[str, Any] = {
        "infra": {"limit": infra_limit, "used": grants, "left": max(infra_limit - grants, 0)},
        "breaker": {
            "threshold": breaker_threshold,
            "in_a_row": in_a_row,
            "reason": last_reason.value if last_reason is not None else None,
            "open": bool(ended) and bool(getattr(ended[-1], "breaker", False)),
        },
    }
    if retries is None:
        out["retries"] = {"limit": None, "used": len(stock), "left": None}
    else:
        used = min(len(stock), retries)
        out["retries"] = {"limit": retries, "used": used, "left": max(retries - used, 0)}
    return out


def format_seconds(seconds: float) -> str:
    """``4830`` -> ``"1 h 20 min"`` (the CLI table; the UI has its own)."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60)} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def window_bounds(since: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    until = now or datetime.now(timezone.utc)
    return until - parse_window(since), until
