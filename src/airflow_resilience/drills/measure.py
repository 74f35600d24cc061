"""What a drill run cost, read from Airflow's database and the task's own marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_resilience.drills.model import (
    TASK,
    Attempt,
    RunRecord,
    check_invariants,
    retries_spent,
    time_to_recover,
    work_redone,
)


def _read_marks(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(af, side, scenario, cfg, dag_id, run_id, marks, triggered, disruptions, job_server, task=TASK) -> RunRecord:
    events = _read_marks(marks)
    history = af.try_history(dag_id, run_id, task)
    attempts = [
        Attempt(h.try_number, h.start_date.timestamp() if h.start_date else None,
                h.end_date.timestamp() if h.end_date else None, h.state)
        for h in history
    ]
    ledger = (af.state_store(dag_id, run_id, task).get("resilience:ledger") or {}).get("attempts", [])
    counts: dict[str, int] = {}
    for m in events:
        if m["ev"] == "item-end":
            counts[str(m["i"])] = counts.get(str(m["i"]), 0) + 1
    progress = [(m["t"], m["at"]) for m in events if m["ev"] in ("item-end", "attempt-start")]
    if scenario.workload == "dag":  # your DAG writes no progress marks: a later try starting is recovery
        progress = [(a.try_number, a.start) for a in attempts if a.start is not None]
    first = disruptions[0] if disruptions else None
    job_runs = len(job_server.runs(run_name=run_id)) if scenario.workload == "job" and job_server else None
    record = RunRecord(
        side=side,
        scenario=scenario.label,
        dag_id=dag_id,
        run_id=run_id,
        disruptions=disruptions,
        triggered_at=triggered,
        attempts=attempts,
        final_state=af.run_state(dag_id, run_id),
        item_seconds=cfg.seconds if scenario.workload == "load" else 0.0,
        items=cfg.items if scenario.workload == "load" else 0,
        finished_counts=counts,
        attempt_starts=[m for m in events if m["ev"] == "attempt-start"],
        causes=[f"{a['cause']['kind']}/{a['cause']['reason']}:{a['verdict']}" for a in ledger],
        retries_spent=retries_spent(side, len(attempts), [a["cause"]["kind"] for a in ledger]),
        recovered_s=time_to_recover(first["at"], progress, first["try_number"]) if first else None,
        work_redone_s=None if scenario.workload == "dag" else work_redone(counts, cfg.seconds if scenario.workload == "load" else 0.0),
        job_runs=job_runs,
    )
    if side == "ours":
        record.violations = check_invariants(record)
    return record
