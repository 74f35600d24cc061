"""Benchmark of infrastructure-aware execution: stock Airflow 3.3.2 vs airflow-resilience, same run.

Two disruptions of a 60 x 1 s task (retries=1), each on its own DAG run:
  eviction     SIGTERM to the supervisor at 1/3 of the task, SIGKILL to it 10 s later
  lost worker  SIGKILL to the supervisor at 1/3 of the task
Stock: the package switched off (AIRFLOW__RESILIENCE__ENABLED=False), stock heartbeat timeout (300 s), a
plain loop. Ours: the package on (defaults), a Checkpoint.iterate loop. Printed per scenario: time from
the disruption to the next attempt running, work redone (seconds of finished items done again), retries
spent (failures charged to `retries`), final state, disruption-to-finish time.

    python benchmarks/bench_infra.py [--database auto|postgres|sqlite] [--items 60] [--seconds 1]
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


def scenario(af, name: str, checkpoint: bool, args, out: dict) -> None:
    marks = Path(tempfile.mkdtemp(prefix="bench-infra-")) / f"{name}.jsonl"
    conf = {"marks": str(marks), "items": args.items, "seconds": args.seconds, "checkpoint": checkpoint}
    run_id = af.trigger("bench_load", conf=conf)
    third = args.items // 3
    while len([m for m in read(marks) if m["ev"] == "item-end"]) < third:
        time.sleep(0.05)
    procs = af.task_processes("bench_load", run_id, "load")
    disrupted = time.time()
    if name == "eviction":
        os.kill(procs.supervisor, signal.SIGTERM)
        time.sleep(10)
        af.end_grace(procs)  # SIGKILL of what still runs the evicted attempt (stock: all of it)
    else:
        os.kill(procs.supervisor, signal.SIGKILL)
    state = af.wait_for_run("bench_load", run_id, timeout=900)
    events = read(marks)
    starts = [m for m in events if m["ev"] == "attempt-start" and m["at"] > disrupted]
    ends = [m for m in events if m["ev"] == "item-end"]
    seen: dict[int, int] = {}
    for m in ends:
        seen[m["i"]] = seen.get(m["i"], 0) + 1
    redone = sum(n - 1 for n in seen.values())
    tries = af.try_history("bench_load", run_id, "load")
    ledger = (af.state_store("bench_load", run_id, "load").get("resilience:ledger") or {}).get("attempts", [])
    if ledger:
        retries_spent = sum(1 for a in ledger if a["cause"]["kind"] in ("application", "timeout"))
    else:
        retries_spent = len(tries) - 1
    out[name] = {
        "state": state,
        "disruption_to_next_attempt_s": round(starts[0]["at"] - disrupted, 1) if starts else None,
        "work_redone_s": round(redone * args.seconds, 1),
        "retries_spent": retries_spent,
        "tries": len(tries),
        "disruption_to_finish_s": round(max(m["at"] for m in ends) - disrupted, 1),
        "causes": [f"{a['cause']['kind']}/{a['cause']['reason']}:{a['verdict']}" for a in ledger],
    }


def run_side(side: str, args) -> dict:
    from airflow_resilience.testing import AirflowEnvironment

    config = {"AIRFLOW__RESILIENCE__ENABLED": "False"} if side == "stock" else {}
    af = AirflowEnvironment.create(dags=[HERE / "dags" / "bench_infra_dags.py"], database=args.database, config=config)
    out: dict = {}
    try:
        threads = [
            threading.Thread(target=scenario, args=(af, name, side == "ours", args, out))
            for name in ("eviction", "lost_worker")
        ]
        for t in threads:
            t.start()
            time.sleep(1)
        for t in threads:
            t.join()
    finally:
        af.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, choices=["postgres", "sqlite", None])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    results = {side: run_side(side, args) for side in ("stock", "ours")}
    rows = [
        ("final state", "state"),
        ("disruption -> next attempt running (s)", "disruption_to_next_attempt_s"),
        ("work redone (s)", "work_redone_s"),
        ("retries spent", "retries_spent"),
        ("tries", "tries"),
        ("disruption -> finish (s)", "disruption_to_finish_s"),
    ]
    print(f"\n{args.items} x {args.seconds}s task, retries=1, disrupted at 1/3")
    for name in ("eviction", "lost_worker"):
        print(f"\n{name}: {'stock Airflow':>44}{'airflow-resilience':>22}")
        for label, key in rows:
            print(f"  {label:42}{results['stock'][name][key]!s:>16}{results['ours'][name][key]!s:>22}")
        print(f"  causes recorded (ours): {', '.join(results['ours'][name]['causes'])}")
    Path("reports").mkdir(exist_ok=True)
    Path("reports/bench_infra.json").write_text(json.dumps(results, indent=2))
    print("\nwritten: reports/bench_infra.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
