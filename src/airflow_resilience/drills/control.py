"""Control-plane drills: restart the scheduler, the API server, the database or the Celery broker, or kill the
triggerer, while a task runs (or waits deferred), and measure the run from Airflow's records.

.. code-block:: python

    from airflow_resilience.drills.control import CONTROL_DAGS, run_control

    record = run_control(af, "db_restart", workdir, job_server=server)
    assert record.final_state == "success" and not record.violations

The workloads (``drills/dags/resilience_drill_control.py``, ``retries=0``): a checkpointed loop for every kind
but ``triggerer_kill``, which hits a deferrable Databricks run on the loopback Jobs API server while the
triggerer waits for it.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_resilience.drills.inject import _wait, disrupt_control_plane
from airflow_resilience.drills.measure import _read_marks, measure
from airflow_resilience.drills.model import TASK, RunRecord

CONTROL_DAGS = Path(__file__).parent / "dags" / "resilience_drill_control.py"
LOAD_DAG = "resilience_drill_control_load"
DEFERRED_DAG = "resilience_drill_control_deferred"

#: The control-plane disruptions and what each needs of the environment.
CONTROL_PLANE = ("scheduler_restart", "api_restart", "triggerer_kill", "db_restart", "broker_restart")


@dataclass(frozen=True)
class ControlScenario:
    disruption: str
    #: "load" (the checkpointed loop) or "job" (the deferred Databricks run)
    workload: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.disruption


@dataclass
class ControlConfig:
    items: int = 20
    seconds: float = 0.5
    job_duration: float = 15.0
    #: the fraction of the work done when the disruption comes
    at: float = 0.4
    run_timeout: float = 300.0
    grace: float = 10.0


def workload_of(kind: str) -> str:
    if kind not in CONTROL_PLANE:
        raise ValueError(f"unknown control-plane disruption {kind!r}; choose from {', '.join(CONTROL_PLANE)}")
    return "job" if kind == "triggerer_kill" else "load"


def wait_api(af: Any, timeout: float = 120) -> None:
    """Wait until the API server answers its health route again (after a restart of it or of the database)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = af._http("GET", "/api/v2/monitor/health", auth=False)
            if (last.get("metadatabase") or {}).get("status") == "healthy":
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"drill: the API server did not answer healthy in {timeout:.0f}s: {last}")


def run_control(af: Any, kind: str, workdir: Path, *, job_server: Any = None, config: ControlConfig | None = None,
                name: str = "") -> RunRecord:
    """Trigger one run of the control-plane workload for ``kind``, disrupt it once at ``config.at`` of the work,
    wait for its end and measure it (side ``ours``; invariants checked)."""
    cfg = config or ControlConfig()
    workload = workload_of(kind)
    scenario = ControlScenario(kind, workload, name)
    run_id = f"drill__ours__{scenario.label}__{secrets.token_hex(3)}"
    marks = workdir / f"{run_id}.jsonl"
    if workload == "job":
        if job_server is None:
            raise ValueError("triggerer_kill needs the loopback job server (job_server=...)")
        dag_id, conf = DEFERRED_DAG, {"marks": str(marks), "duration": cfg.job_duration}
    else:
        dag_id, conf = LOAD_DAG, {"marks": str(marks), "items": cfg.items, "seconds": cfg.seconds}
    triggered = time.time()
    af.trigger(dag_id, conf=conf, run_id=run_id)

    def ti():
        return af.task_instance(dag_id, run_id, TASK)

    def ended_early() -> bool:
        row = ti()
        if row.state in ("success", "failed", "upstream_failed", "skipped"):
            log = af.task_log(dag_id, run_id, TASK, max(1, row.try_number or 1))[-3000:]
            raise RuntimeError(f"drill: {run_id} ended {row.state} before the {kind} disruption (nothing to measure)\n"
                               f"{af.diagnosis(dag_id, run_id)}\n--- task log (tail):\n{log}")
        return False

    if workload == "job":
        target = cfg.job_duration * cfg.at
        _wait(lambda: not ended_early() and ti().state == "deferred"
              and any(r["running_seconds"] >= target for r in job_server.runs(run_name=run_id)),
              cfg.run_timeout, f"{run_id}: deferred with the job {cfg.at:.0%} done")
    else:
        target = max(1, math.ceil(cfg.items * cfg.at))
        _wait(lambda: not ended_early() and len({m["i"] for m in _read_marks(marks) if m["ev"] == "item-end"}) >= target,
              cfg.run_timeout, f"{run_id}: {target} items done")
    try_before = ti().try_number
    done = disrupt_control_plane(af, kind)
    done["try_number"] = try_before
    wait_api(af)
    af.wait_for_run(dag_id, run_id, timeout=cfg.run_timeout)
    # measure() reads scenario.label/.workload and cfg.items/.seconds (only for the "load" workload)
    return measure(af, "ours", scenario, cfg, dag_id, run_id, marks, triggered, [done], job_server, TASK)
