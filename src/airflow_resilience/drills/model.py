"""What a drill measured (pure: no Airflow import). Results are plain JSON, so a report can be rebuilt from
a saved results file (``airflow resilience drill --from results.json``).

Three sides run the same task (``SIDES``): ``stock`` (stock Airflow 3.3.2, package off, a plain loop),
``stock-checkpointed`` (stock Airflow 3.3.2, package off, a careful hand-written checkpoint in
``context["task_state_store"]``: the best a stock user can do) and ``ours`` (the package on,
``Checkpoint.iterate``).

Per run:

* **time to recover** — from the disruption to the next attempt's first progress mark (the task running
  its own code again); ``None`` when no later attempt ran (the run failed);
* **work redone** — seconds of items finished more than once (from the task's own progress marks);
  ``None`` when the run did not end in success (the work was never completed, so "redone" has no meaning);
* **tries**, **failed tries**, **grants** and **retries spent** — from Airflow's ``task_instance`` and
  ``task_instance_history`` only (:func:`count_tries`), on every side. The package's infrastructure
  grant raises ``max_tries`` by one, so ``grants = final max_tries - configured retries`` and the
  retries charged to the user's ``retries`` are the tries after the first that no grant paid for;
* **final state** (the DAG run's) and **causes** (from the package's ledger: information only, never a count).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The shape of ``results.json``. 2: three sides, per-run retries/max_tries/grants from Airflow's records.
FORMAT = 2
#: The task id of the drill DAGs' work task.
TASK = "work"

DISRUPTIONS = ("eviction", "lost_worker", "oom", "scheduler_restart", "api_restart")
SIDES = ("stock", "stock-checkpointed", "ours")
#: The sides a ratio is taken against, each named in the ratio.
BASELINES = ("stock", "stock-checkpointed")
#: The task-instance states of a try that ended without success (``task_instance_history`` archives an
#: unfinished try as ``failed``).
FAILED_STATES = ("failed", "up_for_retry")


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


@dataclass(frozen=True)
class TryCounts:
    """What Airflow's records say a task instance's tries cost (:func:`count_tries`)."""

    #: tries Airflow ran (rows of ``task_instance_history`` plus the current ``task_instance``)
    tries: int
    #: tries that ended without success
    failed: int
    #: infrastructure grants: ``max_tries`` raised above the configured ``retries``
    grants: int
    #: tries after the first that were paid from the user's ``retries`` (``tries - 1 - grants``)
    retries_spent: int


def count_tries(states: list[str | None], final_max_tries: int, retries: int) -> TryCounts:
    """Tries, failures, grants and retries spent of one task instance, from Airflow's records alone.

    ``states`` are the tries' states oldest first, ``final_max_tries`` is ``task_instance.max_tries`` at
    the end, ``retries`` the task's configured ``retries``. Stock Airflow sets ``max_tries = retries``;
    only a grant raises it (by one each), so ``grants = final_max_tries - retries``. Every try after the
    first was paid for by a retry or a grant, so ``retries spent = tries - 1 - grants``: with the run
    successful that is ``failed tries - grants``; a last try that failed led to no further try and spent
    nothing (the run simply failed). A grant not (yet) used by a try leaves nothing spent (never below 0).
    """
    tries = len(states)
    failed = sum(1 for s in states if s in FAILED_STATES)
    grants = max(0, final_max_tries - retries)
    return TryCounts(tries=tries, failed=failed, grants=grants, retries_spent=max(0, tries - 1 - grants))


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
    causes: list[str]  # the ledger's, information only
    retries_spent: int
    recovered_s: float | None
    work_redone_s: float | None  # None for your own DAG (no progress marks) and for a run that failed
    job_runs: int | None = None  # external runs on the loopback Jobs API server (job drills)
    violations: list[Violation] = field(default_factory=list)
    #: the task's configured ``retries`` (Airflow's task definition) and ``task_instance.max_tries`` at the end
    retries: int = 0
    max_tries: int = 0
    failed_tries: int = 0
    grants: int = 0

    @property
    def tries(self) -> int:
        return len(self.attempts)


def work_redone(finished_counts: dict[str, int], item_seconds: float) -> float:
    return round(sum(max(0, n - 1) for n in finished_counts.values()) * item_seconds, 3)


def time_to_recover(disrupted_at: float, progress_at: list[tuple[int, float]], disrupted_try: int) -> float | None:
    """Seconds from the disruption to the first progress of a later try (``(try, at)`` marks)."""
    later = [at for t, at in progress_at if t > disrupted_try and at >= disrupted_at]
    return round(min(later) - disrupted_at, 3) if later else None


#: What a hard kill may make a checkpointed loop redo, per disruption: the checkpoint's stated bound with
#: write-behind (``[resilience] checkpoint_write_behind``, the default): the item whose write was in flight and
#: the one after it (checkpoint.py, "what a hard kill loses").
HARD_KILL_REDONE_ITEMS = 2


def check_invariants(run: RunRecord, *, max_redone_items_per_disruption: int = HARD_KILL_REDONE_ITEMS) -> list[Violation]:
    """The chaos invariants (for runs with the package on). Tries, grants and retries spent are Airflow's
    (:func:`count_tries`): an empty or missing ledger proves nothing here."""
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
            f"Airflow's records: {run.tries} tries, {run.failed_tries} failed, max_tries {run.max_tries} with "
            f"retries={run.retries} ({run.grants} grants), so {run.retries_spent} retries spent; "
            f"ledger causes {run.causes or 'none'}",
        ))
    if run.final_state != "success":
        found.append(Violation("the run ends in success", f"final state {run.final_state}; causes {run.causes or 'none'}"))
    return found


@dataclass
class DrillResult:
    meta: dict[str, Any]
    runs: list[RunRecord]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "meta": self.meta, "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DrillResult:
        if isinstance(raw, dict) and raw.get("format") == 1 and isinstance(raw.get("runs"), list):
            raise ValueError(
                "drill results of format 1 (two sides, retries counted from the ledger) cannot be read by this "
                f"version (format {FORMAT}: three sides, counts from Airflow's records): run the drill again "
                "to produce a new results.json (airflow resilience drill --out DIR)"
            )
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

    def sides(self) -> list[str]:
        """The sides with runs, in ``SIDES`` order."""
        return [s for s in SIDES if any(r.side == s for r in self.runs)]

    def summary(self) -> list[dict[str, Any]]:
        """Per scenario and side: medians (over the runs that have the value) and totals."""
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
                    "failed": sum(1 for r in runs if r.final_state != "success"),
                    "retries": sorted({r.retries for r in runs}),
                    "recovered_s_median": _median(rec),
                    "work_redone_s_median": _median([r.work_redone_s for r in runs if r.work_redone_s is not None]),
                    "retries_spent_median": _median([r.retries_spent for r in runs]),
                    "retries_spent_total": sum(r.retries_spent for r in runs),
                    "grants_total": sum(r.grants for r in runs),
                    "tries_median": _median([r.tries for r in runs]),
                    "job_runs_total": sum(r.job_runs for r in runs if r.job_runs is not None)
                    if any(r.job_runs is not None for r in runs) else None,
                    "violations": sum(len(r.violations) for r in runs),
                })
        return rows

    def ratios(self) -> list[dict[str, Any]]:
        """Baseline ÷ ours per scenario and baseline (``stock``, ``stock-checkpointed``), for time to recover
        and work redone. A ratio is ``None`` with a ``note`` saying why when there is no number: the
        baseline failed in every run (it never recovered), ours did, or ours is 0."""
        by = {(row["scenario"], row["side"]): row for row in self.summary()}
        out = []
        for scenario in self.scenarios():
            o = by.get((scenario, "ours"))
            if not o:
                continue
            for baseline in BASELINES:
                b = by.get((scenario, baseline))
                if not b:
                    continue
                note = None
                if b["success"] == 0:
                    note = f"{baseline} failed in every run ({b['failed']} of {b['runs']}, retries={_retries(b)}): no recovery to compare"
                elif o["success"] == 0:
                    note = f"ours failed in every run ({o['failed']} of {o['runs']}): no recovery to compare"
                elif b["failed"]:
                    note = f"{baseline} failed in {b['failed']} of {b['runs']} runs: medians over its successful runs"
                failed_side = b["success"] == 0 or o["success"] == 0
                out.append({
                    "scenario": scenario,
                    "baseline": baseline,
                    "recover_ratio": None if failed_side else _ratio(b["recovered_s_median"], o["recovered_s_median"]),
                    "redone_ratio": None if failed_side else _ratio(b["work_redone_s_median"], o["work_redone_s_median"]),
                    "recovered_s": (b["recovered_s_median"], o["recovered_s_median"]),
                    "redone_s": (b["work_redone_s_median"], o["work_redone_s_median"]),
                    "baseline_failed": b["failed"],
                    "note": note,
                })
        return out


def _retries(row: dict[str, Any]) -> str:
    return "/".join(str(r) for r in row["retries"]) or "?"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 1)


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 2)


def chaos_summary(result: DrillResult) -> dict[str, Any]:
    """A chaos run's figures: disruptions by kind (each counted once, at the run it was aimed at), runs,
    broken invariants by name, and per kind the median / p95 time to recover (runs that recovered in a later
    try) and the work redone per disruption (seconds of items finished twice)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for run in result.runs:
        own = [d for d in run.disruptions if not d.get("overlap")]
        if not own:
            continue
        kind = own[0]["kind"]
        row = by_kind.setdefault(kind, {"disruptions": 0, "runs": 0, "recovered": [], "redone_per": [], "violations": 0})
        row["disruptions"] += len(own)
        row["runs"] += 1
        row["violations"] += len(run.violations)
        if run.recovered_s is not None:
            row["recovered"].append(run.recovered_s)
        if run.work_redone_s is not None:
            row["redone_per"].append(run.work_redone_s / len(own))
    kinds = {
        kind: {"disruptions": row["disruptions"], "runs": row["runs"], "violations": row["violations"],
               "recovered_s_median": _median(row["recovered"]), "recovered_s_p95": _p95(row["recovered"]),
               "recovered_runs": len(row["recovered"]),
               "redone_s_per_disruption_median": _median(row["redone_per"]),
               "redone_s_per_disruption_max": round(max(row["redone_per"]), 2) if row["redone_per"] else None}
        for kind, row in sorted(by_kind.items())
    }
    broken: dict[str, int] = {}
    for run in result.runs:
        for v in run.violations:
            broken[v.invariant] = broken.get(v.invariant, 0) + 1
    return {
        "runs": len(result.runs),
        "disruptions": sum(k["disruptions"] for k in kinds.values()),
        "overlaps": sum(1 for r in result.runs for d in r.disruptions if d.get("overlap")),
        "success": sum(1 for r in result.runs if r.final_state == "success"),
        "violations": broken,
        "kinds": kinds,
    }
