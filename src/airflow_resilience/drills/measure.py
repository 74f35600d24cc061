"""What a drill run cost, read from Airflow's database and the task's own marks.

Tries, their states, ``max_tries``, the configured ``retries`` and the final state are Airflow's own
records (``task_instance``, ``task_instance_history``, ``dag_run`` and the task's definition as the API
server serves it), on every side; the package's ledger contributes the causes, as information only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow_resilience.drills.model import (
    TASK,
    Attempt,
    RunRecord,
    check_invariants,
    count_tries,
    time_to_recover,
    work_redone,
)

log = logging.getLogger(__name__)


def _read_marks(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def configured_retries(af: Any, dag_id: str, task_id: str, default: int | None = None) -> int:
    """The task's ``retries`` as Airflow runs it (``GET /api/v2/dags/{dag_id}/tasks/{task_id}``). Asked up to
    three times (a drill may just have restarted the API server or the database); then ``default`` if given."""
    import time

    for attempt in range(3):
        try:
            return int(af._http("GET", f"/api/v2/dags/{dag_id}/tasks/{task_id}").get("retries") or 0)
        except Exception as exc:
            if attempt < 2:
                time.sleep(1.0 + attempt)
                continue
            if default is None:
                raise RuntimeError(f"drill: cannot read the retries of {dag_id}.{task_id} from the API server: {exc}") from exc
            log.warning("drill: could not read %s.%s's retries from the API server (%s); using %s",
                        dag_id, task_id, exc, default)
    return int(default or 0)


def measure(af, side, scenario, cfg, dag_id, run_id, marks, triggered, disruptions, job_server, task=TASK,
            *, retries: int | None = None) -> RunRecord:
    """Read one finished run. ``retries`` is what the drill deployed (checked against Airflow's task definition
    when both are known; Airflow's wins)."""
    events = _read_marks(marks)
    history = af.try_history(dag_id, run_id, task)
    attempts = [
        Attempt(h.try_number, h.start_date.timestamp() if h.start_date else None,
                h.end_date.timestamp() if h.end_date else None, h.state)
        for h in history
    ]
    final_ti = af.task_instance(dag_id, run_id, task)
    configured = configured_retries(af, dag_id, task, default=retries)
    if retries is not None and configured != retries:
        log.warning("drill: %s.%s has retries=%s in Airflow, the drill asked for %s", dag_id, task, configured, retries)
    counts_of_tries = count_tries([a.state for a in attempts], int(final_ti.max_tries or 0), configured)
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
    final_state = af.run_state(dag_id, run_id)
    item_seconds = cfg.seconds if scenario.workload == "load" else 0.0
    record = RunRecord(
        side=side,
        scenario=scenario.label,
        dag_id=dag_id,
        run_id=run_id,
        disruptions=disruptions,
        triggered_at=triggered,
        attempts=attempts,
        final_state=final_state,
        item_seconds=item_seconds,
        items=cfg.items if scenario.workload == "load" else 0,
        finished_counts=counts,
        attempt_starts=[m for m in events if m["ev"] == "attempt-start"],
        causes=[f"{a['cause']['kind']}/{a['cause']['reason']}:{a['verdict']}" for a in ledger],
        retries_spent=counts_of_tries.retries_spent,
        recovered_s=time_to_recover(first["at"], progress, first["try_number"]) if first else None,
        work_redone_s=None if scenario.workload == "dag" or final_state != "success" else work_redone(counts, item_seconds),
        job_runs=job_runs,
        retries=configured,
        max_tries=int(final_ti.max_tries or 0),
        failed_tries=counts_of_tries.failed,
        grants=counts_of_tries.grants,
    )
    if side == "ours":
        record.violations = check_invariants(record)
    return record
