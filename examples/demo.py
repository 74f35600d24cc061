"""`make demo`: an embedded Airflow on SQLite, the same load killed half-way with and without checkpoints.

Boots Airflow 3.3.2 (api-server, scheduler, dag-processor, triggerer, LocalExecutor) in a temporary
home, runs `load_stock` and `load_resumable` (examples/dags/resumable_load.py) side by side, SIGKILLs
each task's runner process once half of the partitions are copied (what the OOM killer does), lets Airflow
retry, and prints what the kill cost.
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
    print(f"Booting an embedded Airflow ({args.database}) ...", flush=True)
    af = AirflowEnvironment.create(
        dags=[HERE / "dags" / "resumable_load.py"], database=None if args.database == "auto" else args.database
    )
    results = {}
    try:
        runs = {}
        for dag_id in ("load_stock", "load_resumable"):
            marks = work / f"{dag_id}.jsonl"
            conf = {"marks": str(marks), "parts": args.parts, "seconds": args.seconds}
            runs[dag_id] = (af.trigger(dag_id, conf=conf), marks)
        killed_at = {}
        pending = set(runs)
        while pending:
            for dag_id in list(pending):
                run_id, marks = runs[dag_id]
                if len([m for m in read_marks(marks) if m["t"] == 1]) >= kill_at:
                    pid = af.signal_runner(dag_id, run_id, "load", signal.SIGKILL)
                    killed_at[dag_id] = time.time()
                    print(f"  {dag_id}: SIGKILL task runner (pid {pid}) after {kill_at} of {args.parts} partitions")
                    pending.discard(dag_id)
            time.sleep(0.05)
        for dag_id, (run_id, marks) in runs.items():
            state = af.wait_for_run(dag_id, run_id, timeout=300)
            tries = af.try_history(dag_id, run_id, "load")
            done = read_marks(marks)
            resumed = [m for m in done if m["t"] > 1]
            first_try_parts = {m["part"] for m in done if m["t"] == 1}
            redone = sum(1 for m in resumed if m["part"] in first_try_parts)
            results[dag_id] = {
                "state": state,
                "tries": len(tries),
                "retries_spent": len(tries) - 1,
                "partitions_copied": len(done),
                "partitions_redone": redone,
                "seconds_redone": round(redone * args.seconds, 1),
                "first_start_to_finish_s": round((tries[-1].end_date - tries[0].start_date).total_seconds(), 1),
                "next_attempt_started_after_kill_s": round(tries[-1].start_date.timestamp() - killed_at[dag_id], 1),
            }
    finally:
        af.stop()
    stock, ours = results["load_stock"], results["load_resumable"]
    rows = [
        ("final state", "state"),
        ("tries", "tries"),
        ("retries spent", "retries_spent"),
        ("partitions copied", "partitions_copied"),
        ("partitions redone", "partitions_redone"),
        ("seconds of work redone", "seconds_redone"),
        ("first start -> finish (s)", "first_start_to_finish_s"),
        ("kill -> next attempt running (s)", "next_attempt_started_after_kill_s"),
    ]
    print()
    print(f"One SIGKILL of the task runner after {kill_at}/{args.parts} partitions ({args.seconds}s each), {af.database_kind}:")
    print(f"  {'':34}{'stock Airflow':>16}{'airflow-resilience':>22}")
    for label, key in rows:
        print(f"  {label:34}{stock[key]!s:>16}{ours[key]!s:>22}")
    print()
    print("Both spend one retry: paying infrastructure failures from their own budget is the next issue.")
    (work / "demo-results.json").write_text(json.dumps(results, indent=2))
    print(f"Results: {work / 'demo-results.json'}")
    ok = stock["state"] == ours["state"] == "success" and ours["partitions_redone"] <= 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
