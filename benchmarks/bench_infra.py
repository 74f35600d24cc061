"""Benchmark of infrastructure-aware execution: three sides in the same run.

Two disruptions of a 60 x 1 s task, each on its own DAG run:
  eviction     SIGTERM to the supervisor at 1/3 of the task, SIGKILL to it 10 s later
  lost worker  SIGKILL to the supervisor at 1/3 of the task
Sides (the drill DAG, ``src/airflow_resilience/drills/dags/resilience_drill.py``; the run conf ``mode`` picks
the loop):
  stock               the package switched off (AIRFLOW__RESILIENCE__ENABLED=False), a plain loop
  stock-checkpointed  the same Airflow, a hand-written checkpoint in context["task_state_store"]
  ours                the package on (defaults), a Checkpoint.iterate loop
Ours has retries=0; both stock sides --stock-retries (default 1: with none a disruption fails them).
Stock heartbeat timeout (300 s). Printed per scenario: time from the disruption to the next attempt
running, work redone (seconds of finished items done again; n/a for a failed run), tries, retries
spent and grants (from Airflow's task_instance / task_instance_history: grants = final max_tries -
retries, spent = tries - 1 - grants), final state, disruption-to-finish time.

    python benchmarks/bench_infra.py [--database postgres|sqlite] [--items 60] [--seconds 1] [--stock-retries 1]
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

from airflow_resilience.drills.model import SIDES, count_tries  # noqa: E402
from airflow_resilience.drills.runner import DRILL_DAGS, LOAD_MODE, dag_for  # noqa: E402

SCENARIOS = ("eviction", "lost_worker")


def scenario(af, side: str, name: str, retries: int, args, out: dict) -> None:
    marks = Path(tempfile.mkdtemp(prefix="bench-infra-")) / f"{side}-{name}.jsonl"
    dag_id = dag_for("load", side, retries)
    conf = {"marks": str(marks), "items": args.items, "seconds": args.seconds, "mode": LOAD_MODE[side]}
    run_id = af.trigger(dag_id, conf=conf)
    third = args.items // 3
    while len([m for m in read(marks) if m["ev"] == "item-end"]) < third:
        time.sleep(0.05)
    procs = af.task_processes(dag_id, run_id, "work")
    disrupted = time.time()
    if name == "eviction":
        os.kill(procs.supervisor, signal.SIGTERM)
        time.sleep(10)
        af.end_grace(procs)  # SIGKILL of what still runs the evicted attempt (stock: all of it)
    else:
        os.kill(procs.supervisor, signal.SIGKILL)
    state = af.wait_for_run(dag_id, run_id, timeout=900)
    events = read(marks)
    starts = [m for m in events if m["ev"] == "attempt-start" and m["at"] > disrupted]
    ends = [m for m in events if m["ev"] == "item-end"]
    seen: dict[int, int] = {}
    for m in ends:
        seen[m["i"]] = seen.get(m["i"], 0) + 1
    redone = sum(n - 1 for n in seen.values())
    history = af.try_history(dag_id, run_id, "work")
    counts = count_tries([h.state for h in history], af.task_instance(dag_id, run_id, "work").max_tries, retries)
    ledger = (af.state_store(dag_id, run_id, "work").get("resilience:ledger") or {}).get("attempts", [])
    out[(side, name)] = {
        "state": state,
        "retries": retries,
        "disruption_to_next_attempt_s": round(starts[0]["at"] - disrupted, 1) if starts else None,
        "work_redone_s": round(redone * args.seconds, 1) if state == "success" else None,
        "tries": counts.tries,
        "retries_spent": counts.retries_spent,
        "grants": counts.grants,
        "disruption_to_finish_s": round(max(m["at"] for m in ends) - disrupted, 1) if state == "success" else None,
        "causes": [f"{a['cause']['kind']}/{a['cause']['reason']}:{a['verdict']}" for a in ledger],
    }


def run_environment(package_on: bool, sides: tuple[str, ...], args, out: dict) -> None:
    from airflow_resilience.testing import AirflowEnvironment

    config = {} if package_on else {"AIRFLOW__RESILIENCE__ENABLED": "False"}
    af = AirflowEnvironment.create(dags=[DRILL_DAGS], database=args.database, config=config, parallelism=6)
    try:
        threads = [
            threading.Thread(target=scenario, args=(af, side, name, 0 if side == "ours" else args.stock_retries, args, out))
            for side in sides for name in SCENARIOS
        ]
        for t in threads:
            t.start()
            time.sleep(1)
        for t in threads:
            t.join()
    finally:
        af.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, choices=["postgres", "sqlite", None])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--stock-retries", type=int, default=1, help="retries of both stock sides (ours: 0)")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    results: dict = {}
    envs = [threading.Thread(target=run_environment, args=(False, ("stock", "stock-checkpointed"), args, results)),
            threading.Thread(target=run_environment, args=(True, ("ours",), args, results))]
    for t in envs:
        t.start()
    for t in envs:
        t.join()
    rows = [
        ("final state", "state"),
        ("retries given", "retries"),
        ("disruption -> next attempt running (s)", "disruption_to_next_attempt_s"),
        ("work redone (s)", "work_redone_s"),
        ("tries", "tries"),
        ("retries spent", "retries_spent"),
        ("grants (max_tries raised)", "grants"),
        ("disruption -> finish (s)", "disruption_to_finish_s"),
    ]
    print(f"\n{args.items} x {args.seconds}s task, disrupted at 1/3; ours retries=0, stock sides "
          f"retries={args.stock_retries}; counts from task_instance / task_instance_history")
    for name in SCENARIOS:
        print(f"\n{name + ':':44}" + "".join(f"{side:>21}" for side in SIDES))
        for label, key in rows:
            cells = "".join(f"{str(results.get((side, name), {}).get(key, 'not run')):>21}" for side in SIDES)
            print(f"  {label:42}{cells}")
        print(f"  causes recorded (ours, ledger): {', '.join(results.get(('ours', name), {}).get('causes', []))}")
    Path("reports").mkdir(exist_ok=True)
    Path("reports/bench_infra.json").write_text(json.dumps(
        {side: {name: results.get((side, name)) for name in SCENARIOS} for side in SIDES}, indent=2))
    print("\nwritten: reports/bench_infra.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
