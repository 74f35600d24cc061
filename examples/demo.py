"""`make demo`: embedded Airflows on SQLite, the same load killed half-way with and without us.

Boots two Airflow 3.3.2 deployments (api-server, scheduler, dag-processor, triggerer, LocalExecutor) in
temporary homes: one with airflow-resilience switched off (`[resilience] enabled = False`, stock
behaviour) running `load_stock` (a plain loop), one with it on running `load_resumable`
(`Checkpoint.iterate`), both from examples/dags/resumable_load.py. It SIGKILLs each task's runner process
once half of the partitions are copied (what the OOM killer does) and prints what the kill cost.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from airflow_resilience.testing import AirflowEnvironment

HERE = Path(__file__).resolve().parent


def read_marks(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=0.3, help="seconds of work per partition")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres", "auto"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    kill_at = args.parts // 2
    work = Path(tempfile.mkdtemp(prefix="resilience-demo-"))
    database = None if args.database == "auto" else args.database
    envs = {}
    results = {}
    try:
        for dag_id, config in (("load_stock", {"AIRFLOW__RESILIENCE__ENABLED": "False"}), ("load_resumable", {})):
            label = "stock" if config else "airflow-resilience"
            print(f"Booting an embedded Airflow ({args.database}, {label}) ...", flush=True)
            envs[dag_id] = AirflowEnvironment.create(
                dags=[HERE / "dags" / "resumable_load.py"], database=database, config=config
            )
        runs = {}
        for dag_id, af in envs.items():
            marks = work / f"{dag_id}.jsonl"
            conf = {"marks": str(marks), "parts": args.parts, "seconds": args.seconds}
            runs[dag_id] = (af.trigger(dag_id, conf=conf), marks)
        killed_at = {}
        pending = set(runs)
        while pending:
            for dag_id in list(pending):
                run_id, marks = runs[dag_id]
                if len([m for m in read_marks(marks) if m["t"] == 1]) >= kill_at:
                    pid = envs[dag_id].signal_runner(dag_id, run_id, "load", signal.SIGKILL)
                    killed_at[dag_id] = time.time()
                    print(f"  {dag_id}: SIGKILL task runner (pid {pid}) after {kill_at} of {args.parts} partitions")
                    pending.discard(dag_id)
            time.sleep(0.05)
        for dag_id, (run_id, marks) in runs.items():
            af = envs[dag_id]
            state = af.wait_for_run(dag_id, run_id, timeout=300)
            tries = af.try_history(dag_id, run_id, "load")
            ledger = (af.state_store(dag_id, run_id, "load").get("resilience:ledger") or {}).get("attempts", [])
            done = read_marks(marks)
            resumed = [m for m in done if m["t"] > 1]
            first_try_parts = {m["part"] for m in done if m["t"] == 1}
            redone = sum(1 for m in resumed if m["part"] in first_try_parts)
            results[dag_id] = {
                "state": state,
                "tries": len(tries),
                # failures charged to `retries`: every one on stock; only application ones with us
                "retries_spent": (
                    sum(1 for a in ledger if a["cause"]["kind"] in ("application", "timeout"))
                    if dag_id == "load_resumable"
                    else len(tries) - 1
                ),
                "cause": ", ".join(f"{a['cause']['kind']}/{a['cause']['reason']}" for a in ledger) or "-",
                "partitions_copied": len(done),
                "partitions_redone": redone,
                "seconds_redone": round(redone * args.seconds, 1),
                "first_start_to_finish_s": round((tries[-1].end_date - tries[0].start_date).total_seconds(), 1),
                "next_attempt_started_after_kill_s": round(tries[-1].start_date.timestamp() - killed_at[dag_id], 1),
            }
    finally:
        for af in envs.values():
            af.stop()
    stock, ours = results["load_stock"], results["load_resumable"]
    rows = [
        ("final state", "state"),
        ("tries", "tries"),
        ("retries spent", "retries_spent"),
        ("cause recorded", "cause"),
        ("partitions copied", "partitions_copied"),
        ("partitions redone", "partitions_redone"),
        ("seconds of work redone", "seconds_redone"),
        ("first start -> finish (s)", "first_start_to_finish_s"),
        ("kill -> next attempt running (s)", "next_attempt_started_after_kill_s"),
    ]
    print()
    kind = next(iter(envs.values())).database_kind
    print(f"One SIGKILL of the task runner after {kill_at}/{args.parts} partitions ({args.seconds}s each, retries=2), {kind}:")
    print(f"  {'':34}{'stock Airflow':>16}{'airflow-resilience':>36}")
    for label, key in rows:
        print(f"  {label:34}{stock[key]!s:>16}{ours[key]!s:>36}")
    print()
    (work / "demo-results.json").write_text(json.dumps(results, indent=2))
    print(f"Results: {work / 'demo-results.json'}")
    ok = stock["state"] == ours["state"] == "success" and ours["partitions_redone"] <= 1 and ours["retries_spent"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
