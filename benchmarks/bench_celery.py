"""Benchmark: disruptions of Celery workers — stock CeleryExecutor against airflow-resilience, measured in
the same run on two Airflow 3.3.2 deployments (Redis broker, PostgreSQL, two `airflow celery worker` nodes
each, concurrency 1). Stock is the same installation with ``[resilience] enabled = False`` and a plain
loop (no checkpoint); ours uses ``Checkpoint.iterate``. The task is the infrastructure benchmark's
``bench_load`` (``benchmarks/dags/bench_infra_dags.py``): ``--steps`` × ``--delay`` s, retries=1.

  node loss       SIGKILL of every process of the worker running the task, at 1/3 of the task
  warm shutdown   SIGTERM to that worker's main process at 1/3, SIGKILL of the node 10 s later
                  (a Kubernetes pod deletion with a 10 s grace period)

Both sides use ``[scheduler] task_instance_heartbeat_timeout = 60`` (stock: 300 s) to keep the run short;
stock's recovery times scale with it, ours do not depend on it.

    python benchmarks/bench_celery.py [--steps 30] [--delay 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
DAG, TASK = "bench_load", "load"
sys.path.insert(0, str(HERE.parent / "src"))
from marks import read, wait_mark  # noqa: E402


def scenario(af, side: str, name: str, args) -> dict:
    marks = Path(tempfile.mkdtemp(prefix="bench-celery-")) / "marks.jsonl"
    conf = {"marks": str(marks), "items": args.steps, "seconds": args.delay, "checkpoint": side == "ours"}
    run_id = af.trigger(DAG, conf=conf)
    first = wait_mark(marks, lambda e: e["ev"] == "attempt-start" and e["t"] == 1)
    victim = af.worker_of(first["pid"])
    at = args.steps // 3
    wait_mark(marks, lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= at - 1)
    disrupted = time.time()
    exited = None
    if name == "node loss":
        af.kill_node(victim)
    else:
        main = psutil.Process(af.component_pid(victim))
        af.terminate_worker(victim)
        try:
            main.wait(timeout=10)
            exited = time.time() - disrupted
        except psutil.TimeoutExpired:
            af.kill_node(victim)
    state = af.wait_for_run(DAG, run_id, timeout=900)
    events = read(marks)
    second = [e for e in events if e["ev"] == "attempt-start" and e["t"] == 2]
    done1 = {e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 1}
    done2 = [e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 2]
    tries = af.try_history(DAG, run_id, TASK)
    # restart the node for the next scenario
    if victim not in af._procs or af._procs[victim].poll() is not None:
        af._procs.pop(victim, None)
        af.start_component(victim)
        af.wait_worker_ready(victim)
    return {
        "side": side,
        "scenario": name,
        "state": state,
        "to_next_attempt_s": (second[0]["at"] - disrupted) if second else None,
        "worker_exited_after_sigterm_s": exited,
        "redone_s": len(done1 & set(done2)) * args.delay,
        "retries_spent": sum(1 for t in tries[:-1]) if side == "stock" else _retries_spent(af, run_id),
        "tries": len(tries),
    }


def _retries_spent(af, run_id: str) -> int:
    """Tries the budget did not pay for (application retries), from the ledger."""
    from airflow_resilience.ledger import LEDGER_KEY

    ledger = af.state_store(DAG, run_id, TASK).get(LEDGER_KEY, {"attempts": []})
    return sum(1 for a in ledger["attempts"] if a["verdict"] not in ("grant", "drain"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()
    from airflow_resilience.testing import AirflowEnvironment

    rows = []
    for side in ("stock", "ours"):
        with AirflowEnvironment.create(
            dags=[HERE / "dags" / "bench_infra_dags.py"],
            executor="celery",
            celery_workers=2,
            worker_concurrency=1,
            config={
                "AIRFLOW__RESILIENCE__ENABLED": "False" if side == "stock" else "True",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            },
        ) as af:
            for name in ("node loss", "warm shutdown"):
                rows.append(scenario(af, side, name, args))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'scenario':15} {'side':6} {'state':8} {'next attempt s':>15} {'worker exit s':>14} {'redone s':>9} {'retries':>8}")
    for r in rows:
        nxt = f"{r['to_next_attempt_s']:.1f}" if r["to_next_attempt_s"] is not None else "-"
        ex = f"{r['worker_exited_after_sigterm_s']:.1f}" if r["worker_exited_after_sigterm_s"] is not None else "-"
        print(f"{r['scenario']:15} {r['side']:6} {r['state']:8} {nxt:>15} {ex:>14} {r['redone_s']:>9.1f} {r['retries_spent']:>8}")


if __name__ == "__main__":
    main()
