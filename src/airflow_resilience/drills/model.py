"""What a drill measured (pure: no Airflow import). Results are plain JSON, so a report can be rebuilt from
a saved results file (``airflow resilience drill --from results.json``).

Per run:

* **time to recover** — from the disruption to the next attempt's first progress mark (the task running
  its own code again);
* **work redone** — seconds of items finished more than once (from the task's own progress marks);
* **retries spent** — failures charged to ``retries``: on stock Airflow every failed try; with the
  package, the ledger's application and timeout failures (infrastructure ones are paid from the
  infrastructure budget);
* **final state**, **tries** (from Airflow's try history) and **causes** (from the ledger).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
#: The task id of the drill DAGs' work task.
TASK = "work"

DISRUPTIONS = ("eviction", "lost_worker", "oom", "scheduler_restart", "api_restart")
SIDES = ("stock", "ours")


@dataclass
class Attempt:
    try_number: int
    start: float | None
    end: float | None
    state: str | None


@dataclass
class Violation:
    invariant: str
    evidence: str


@dataclass
class RunRecord:
    side: str
    scenario: str
    dag_id: str
    run_id: str
    disruptions: list[dict[str, Any]]  # {"kind", "at", "target_pid"}
    triggered_at: float
    attempts: list[Attempt]
    final_state: str | None
    item_seconds: float
    items: int
    finished_counts: dict[str, int]  # item index (as text, JSON keys) -> times finished
    attempt_starts: list[dict[str, Any]]  # progress marks "attempt-start"
    causes: list[str]
    retries_spent: int
    recovered_s: float | None
    work_redone_s: float | None  # None for your own DAG: it writes no progress marks
    job_runs: int | None = None  # external runs on the loopback Jobs API server (job drills)
    violations: list[Violation] = field(default_factory=list)

    @property
    def tries(self) -> int:
        return len(self.attempts)


def work_redone(finished_counts: dict[str, int], item_seconds: float) -> float:
    return round(sum(max(0, n - 1) for n in finished_counts.values()) * item_seconds, 3)


def time_to_recover(disrupted_at: float, progress_at: list[tuple[int, float]], disrupted_try: int) -> float | None:
    """Seconds from the disruption to the first progress of a later try (``(try, at)`` marks)."""
    later = [at for t, at in progress_at if t > disrupted_try and at >= disrupted_at]
    return round(min(later) - disrupted_at, 3) if later else None


def retries_spent(side: str, tries: int, ledger_kinds: list[str]) -> int:
    """Failures charged to ``retries``."""
    if side == "stock" or not ledger_kinds and tries <= 1:
        return max(0, tries - 1)
    return sum(1 for kind in ledger_kinds if kind in ("application", "timeout"))


def check_invariants(run: RunRecord, *, max_redone_items_per_disruption: int = 1) -> list[Violation]:
    """The chaos invariants (for runs with the package on)."""
    found: list[Violation] = []
    n = len(run.disruptions)
    if run.final_state == "success" and run.items:
        missing = [i for i in range(run.items) if run.finished_counts.get(str(i), 0) == 0]
        if missing and run.job_runs is None:
            found.append(Violation("no SUCCESS without the work done", f"items never finished: {missing[:10]}"))
    redone_items = sum(max(0, c - 1) for c in run.finished_counts.values())
    if run.job_runs is None and redone_items > n * max_redone_items_per_disruption:
        found.append(Violation(
            "no lost checkpoint",
            f"{redone_items} items finished twice after {n} disruption(s) (at most "
            f"{max_redone_items_per_disruption} per disruption); starts: {run.attempt_starts}",
        ))
    if run.job_runs is not None and run.job_runs != 1:
        found.append(Violation("no duplicate external submission", f"{run.job_runs} runs on the job server"))
    if run.retries_spent > 0:
        found.append(Violation(
            "no application retry spent on an infrastructure cause",
            f"retries spent {run.retries_spent}; causes {run.causes}",
        ))
    if run.final_state != "success":
        found.append(Violation("the run ends in success", f"final state {run.final_state}; causes {run.causes}"))
    return found


@dataclass
class DrillResult:
    meta: dict[str, Any]
    runs: list[RunRecord]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "meta": self.meta, "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DrillResult:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("runs"), list):
            raise ValueError(
                f"not a drill results file (format {FORMAT}): expected {{'format': {FORMAT}, 'meta': ..., 'runs': [...]}}"
            )
        runs = []
        for r in raw["runs"]:
            r = dict(r)
            r["attempts"] = [Attempt(**a) for a in r["attempts"]]
            r["violations"] = [Violation(**v) for v in r.get("violations", [])]
            runs.append(RunRecord(**r))
        return cls(raw.get("meta", {}), runs)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: Path) -> DrillResult:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read drill results {path}: {exc}") from None
        return cls.from_json(raw)

    # ------------------------------------------------------------------ summaries
    def scenarios(self) -> list[str]:
        seen: list[str] = []
        for r in self.runs:
            if r.scenario not in seen:
                seen.append(r.scenario)
        return seen

    def summary(self) -> list[dict[str, Any]]:
        """Per scenario and side: medians (and p90 where there are enough runs)."""
        rows = []
        for scenario in self.scenarios():
            for side in SIDES:
                runs = [r for r in self.runs if r.scenario == scenario and r.side == side]
                if not runs:
                    continue
                rec = [r.recovered_s for r in runs if r.recovered_s is not None]
                rows.append({
                    "scenario": scenario,
                    "side": side,
                    "runs": len(runs),
                    "success": sum(1 for r in runs if r.final_state == "success"),
                    "recovered_s_median": _median(rec),
                    "work_redone_s_median": _median([r.work_redone_s for r in runs if r.work_redone_s is not None]),
                    "retries_spent_median": _median([r.retries_spent for r in runs]),
                    "retries_spent_total": sum(r.retries_spent for r in runs),
                    "tries_median": _median([r.tries for r in runs]),
                    "job_runs_total": sum(r.job_runs for r in runs if r.job_runs is not None)
                    if any(r.job_runs is not None for r in runs) else None,
                    "violations": sum(len(r.violations) for r in runs),
                })
        return rows

    def ratios(self) -> list[dict[str, Any]]:
        """stock / ours per scenario, for time to recover and work redone (None where ours is 0)."""
        by = {(row["scenario"], row["side"]): row for row in self.summary()}
        out = []
        for scenario in self.scenarios():
            s, o = by.get((scenario, "stock")), by.get((scenario, "ours"))
            if not s or not o:
                continue
            out.append({
                "scenario": scenario,
                "recover_ratio": _ratio(s["recovered_s_median"], o["recovered_s_median"]),
                "redone_ratio": _ratio(s["work_redone_s_median"], o["work_redone_s_median"]),
                "redone_s": (s["work_redone_s_median"], o["work_redone_s_median"]),
            })
        return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 1)
