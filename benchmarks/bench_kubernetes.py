"""Benchmark: pod disruptions under the KubernetesExecutor — stock Airflow against airflow-resilience, measured
in the same run on one real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler
built from k8s.io/kubernetes; two node agents) and two Airflow 3.3.2 deployments on PostgreSQL, one after the
other. Stock is the same installation with ``[resilience] enabled = False`` and a plain loop (no checkpoint);
ours uses ``Checkpoint.iterate``. The task is ``bench_load`` (``benchmarks/dags/bench_infra_dags.py``):
``--steps`` x ``--delay`` s, ``retries=1`` on both sides (so stock can recover, by spending it).

  eviction    the Eviction API on the running task pod (grace 30 s) at 1/3 of the task
  drain       ``kubectl drain --force`` of the task pod's node at 1/3
  node lost   SIGKILL of the node agent and every process of its pods at 1/3 (the machine is gone)

Airflow's defaults apply on both sides (``task_instance_heartbeat_timeout`` 300 s); ours uses
``kubernetes_node_lost_after`` = 20 s (its default). Tries, retries spent and states come from Airflow's
``task_instance``/``task_instance_history``: retries spent = tries - 1 - tries granted (``max_tries`` above
the DAG's ``retries``).

    python benchmarks/bench_kubernetes.py [--steps 60] [--delay 1] [--json reports/bench_kubernetes.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAG, TASK, RETRIES = "bench_load", "load", 1
sys.path.insert(0, str(HERE.parent / "src"))
from marks import read, wait_mark  # noqa: E402


def scenario(af, kube, side: str, name: str, args) -> dict:
    marks = Path(tempfile.mkdtemp(prefix="bench-k8s-")) / "marks.jsonl"
    conf = {"marks": str(marks), "items": args.steps, "seconds": args.delay, "checkpoint": side == "ours"}
    run_id = af.trigger(DAG, conf=conf)
    pod = af.wait_for_pod(DAG, run_id, TASK, 1, phase="Running", timeout=300)
    node = pod["spec"]["nodeName"]
    at = args.steps // 3
    wait_mark(marks, lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= at - 1, timeout=900)
    disrupted = time.time()
    if name == "eviction":
        kube.evict(pod["metadata"]["name"], grace=30)
    elif name == "drain":
        kube.kubectl("drain", node, "--force", "--ignore-daemonsets", "--grace-period=30", "--timeout=120s", check=False)
    else:
        kube.kill_node(node)
    state = af.wait_for_run(DAG, run_id, timeout=1800)
    events = read(marks)
    second = [e for e in events if e["ev"] == "attempt-start" and e["t"] == 2]
    done1 = {e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 1}
    done2 = [e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 2]
    ti = af.task_instance(DAG, run_id, TASK)
    granted = max(0, int(ti.max_tries) - RETRIES)
    history = af.try_history(DAG, run_id, TASK)
    evidence = af.state_store(DAG, run_id, TASK).get("resilience:evidence") or {}
    noticed = evidence.get("detected_at") if evidence.get("try_number") == 1 else None
    if f"node/{node}" not in kube.procs:
        kube.start_node(node)
    kube.kubectl("uncordon", node, check=False)
    kube.wait_nodes_ready(180)
    return {
        "side": side,
        "scenario": name,
        "state": state,
        "to_next_attempt_s": round(second[0]["at"] - disrupted, 1) if second else None,
        "redone_s": len(done1 & set(done2)) * args.delay,
        "tries": int(ti.try_number),
        "granted": granted,
        "retries_spent": int(ti.try_number) - 1 - granted,
        "noticed_s": round(noticed - disrupted, 1) if noticed else None,
        "retry_reason": (history[0].retry_reason or "")[:160] if history else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--scenarios", default="eviction,drain,node lost")
    parser.add_argument("--sides", default="stock,ours")
    parser.add_argument("--json", type=Path, default=HERE.parent / "reports" / "bench_kubernetes.json")
    args = parser.parse_args()
    from airflow_resilience.testing import AirflowEnvironment
    from airflow_resilience.testing.kube import KubeCluster
    from airflow_resilience.testing.kube.build import cache_dir
    from airflow_resilience.testing.services import SuiteServices, session_plan

    services = SuiteServices(choices=session_plan()).start()
    rows = []
    try:
        t0 = time.monotonic()
        with KubeCluster.start(nodes=2) as kube:
            boot = time.monotonic() - t0
            print(f"cluster boot: {boot:.1f} s (cold build recorded: {(cache_dir() / 'build-seconds').read_text().strip()} s)", flush=True)
            for side in args.sides.split(","):
                with AirflowEnvironment.create(
                    dags=[HERE / "dags" / "bench_infra_dags.py"], executor="kubernetes", kube=kube,
                    config={"AIRFLOW__RESILIENCE__ENABLED": "False" if side == "stock" else "True"},
                ) as af:
                    for name in args.scenarios.split(","):
                        rows.append(scenario(af, kube, side, name, args))
                        print(json.dumps(rows[-1]), flush=True)
    finally:
        services.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"steps": args.steps, "delay": args.delay, "rows": rows}, indent=1))
    print(f"\n{'scenario':10} {'side':6} {'state':8} {'next attempt s':>15} {'redone s':>9} {'tries':>6} {'granted':>8} {'retries spent':>14}")
    for r in rows:
        nxt = f"{r['to_next_attempt_s']:.1f}" if r["to_next_attempt_s"] is not None else "-"
        print(f"{r['scenario']:10} {r['side']:6} {r['state']:8} {nxt:>15} {r['redone_s']:>9.1f} {r['tries']:>6} {r['granted']:>8} {r['retries_spent']:>14}")


if __name__ == "__main__":
    main()
