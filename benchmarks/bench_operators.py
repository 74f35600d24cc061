"""Benchmark: external-job compute wasted by disruptions — the Databricks provider's operator on stock
Airflow 3.3.2 vs airflow-resilience's resumable variant, measured in the same run on the loopback Jobs
API server (job-seconds = seconds runs spent RUNNING on the server).

A 10-minute job scaled 1:10 (``--duration 60``), ``retries=1``, one disruption per DAG run:

  worker crash, mid-job        SIGKILL of the supervisor at half the job (sync operator)
  eviction, mid-job            SIGTERM to the supervisor at half the job, SIGKILL 10 s later (sync)
  worker crash, submit window  SIGKILL of the supervisor after the server accepted the submit, before
                               the run id was saved (sync)
  worker crash, before defer   SIGKILL of the runner with the run submitted, just before defer()
                               (deferrable operator)

Both sides use ``[scheduler] task_instance_heartbeat_timeout = 60`` (stock: 300) so that the stock side's
lost-worker detection does not dominate the wall time; job-seconds do not depend on it.

    python benchmarks/bench_operators.py [--database auto|postgres|sqlite] [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from marks import read  # noqa: E402

SCENARIOS = {
    "worker crash, mid-job": ("", "half", "supervisor", signal.SIGKILL),
    "eviction, mid-job": ("", "half", "supervisor", signal.SIGTERM),
    "worker crash, submit window": ("", "after_submit", "supervisor", signal.SIGKILL),
    "worker crash, before defer": ("_deferrable", "before_defer", "runner", signal.SIGKILL),
}


def scenario(af, server, side: str, name: str, args, out: dict) -> None:
    suffix, when, victim, sig = SCENARIOS[name]
    dag = f"bench_ops_{side}{suffix}"
    marks = Path(tempfile.mkdtemp(prefix="bench-ops-")) / "marks.jsonl"
    run_id = f"{side}-{name.replace(' ', '-').replace(',', '')}"
    conf = {"marks": str(marks), "duration": args.duration}
    if when != "half":
        conf["pause_at"] = when
    af.trigger(dag, conf=conf, run_id=run_id)
    if when == "half":
        while not [r for r in server.runs(run_name=run_id) if r["running_seconds"] >= args.duration / 2]:
            time.sleep(0.1)
    else:
        while not [m for m in read(marks) if m["ev"] == when]:
            time.sleep(0.05)
    procs = af.task_processes(dag, run_id, "job")
    disrupted = time.time()
    os.kill(procs.supervisor if victim == "supervisor" else procs.runner, sig)
    if sig == signal.SIGTERM:
        time.sleep(10)
        af.end_grace(procs)  # SIGKILL of what still runs the evicted attempt
    state = af.wait_for_run(dag, run_id, timeout=1800)
    finished = time.time()
    time.sleep(1)
    runs = server.runs(run_name=run_id)
    used = sum(r["running_seconds"] for r in runs)
    tries = af.try_history(dag, run_id, "job")
    ledger = (af.state_store(dag, run_id, "job").get("resilience:ledger") or {}).get("attempts", [])
    retries_spent = (
        sum(1 for a in ledger if a["cause"]["kind"] in ("application", "timeout")) if ledger else len(tries) - 1
    )
    out[name] = {
        "state": state,
        "runs": len(runs),
        "job_seconds": round(used, 1),
        "wasted_job_seconds": round(max(0.0, used - args.duration), 1),
        "cancelled_runs": sum(1 for r in runs if r["cancelled"]),
        "retries_spent": retries_spent,
        "disruption_to_finish_s": round(finished - disrupted, 1),
    }


def run_side(side: str, server, args, results: dict) -> None:
    from airflow_resilience.testing import AirflowEnvironment

    config = {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": server.airflow_connection(),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
    if side == "stock":
        config["AIRFLOW__RESILIENCE__ENABLED"] = "False"
    af = AirflowEnvironment.create(
        dags=[HERE / "dags" / "bench_ops_dags.py"], database=args.database, config=config, parallelism=4
    )
    out: dict = {}
    try:
        threads = [threading.Thread(target=scenario, args=(af, server, side, n, args, out)) for n in SCENARIOS]
        for t in threads:
            t.start()
            time.sleep(2)
        for t in threads:
            t.join()
    finally:
        af.stop()
    results[side] = out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, choices=["postgres", "sqlite", None])
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    from airflow_resilience.testing.jobserver import JobServer

    results: dict = {}
    with JobServer() as server:
        sides = [threading.Thread(target=run_side, args=(side, server, args, results)) for side in ("stock", "ours")]
        for t in sides:
            t.start()
        for t in sides:
            t.join()
    rows = [
        ("final state", "state"),
        ("runs on the server", "runs"),
        ("job-seconds used", "job_seconds"),
        ("job-seconds wasted", "wasted_job_seconds"),
        ("runs cancelled", "cancelled_runs"),
        ("retries spent", "retries_spent"),
        ("disruption -> finish (s)", "disruption_to_finish_s"),
    ]
    print(f"\nDatabricks job of {args.duration:.0f} s (a 10-minute job scaled 1:10), retries=1, loopback Jobs API")
    for name in SCENARIOS:
        print(f"\n{name}: {'provider operator, stock':>34}{'airflow-resilience':>22}")
        for label, key in rows:
            print(f"  {label:30}{results['stock'][name][key]!s:>26}{results['ours'][name][key]!s:>22}")
    Path("reports").mkdir(exist_ok=True)
    Path("reports/bench_operators.json").write_text(json.dumps({"duration": args.duration, **results}, indent=2))
    print("\nwritten: reports/bench_operators.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
