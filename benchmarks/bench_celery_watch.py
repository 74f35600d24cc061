"""What the Celery lost-worker watch costs as workers grow: broker commands and scheduler CPU per minute.

The watch (``airflow_resilience/airflow/celery_watch.py``, in the lost-worker detector, a child process of
the scheduler) broadcasts ``inspect active`` and ``inspect reserved`` to every worker each
``[resilience] lost_worker_check_interval`` (2 s) and collects the replies. For each worker count in
``--workers`` (``airflow celery worker`` nodes, ``worker_concurrency=1``) and each side — stock
(``[resilience] enabled = False``) and ours (defaults) — one CeleryExecutor deployment on PostgreSQL with its
own private Redis broker is booted, left idle for ``--seconds`` (no task runs: what is measured is the
standing cost), and measured:

* broker commands per minute: the delta of ``INFO commandstats`` (every command any client sent: the
  executor, the workers' own heartbeats and events, and on our side the watch's broadcasts and replies);
* scheduler CPU seconds per minute: ``psutil`` user + system time of the scheduler's process tree (the
  scheduler, its executor and the detector), the delta over the window.

Ours minus stock is what the watch costs. Deployments are booted one after the other (16 worker nodes are 16
worker processes plus their pool children).

    python benchmarks/bench_celery_watch.py [--workers 2,8,16] [--seconds 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def command_counts(port: int) -> dict[str, int]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def measure(side: str, workers: int, args) -> dict:
    from airflow_resilience.testing import AirflowEnvironment
    from airflow_resilience.testing.services import PrivateRedis

    broker = PrivateRedis().start()
    try:
        config = {"AIRFLOW__RESILIENCE__ENABLED": "False"} if side == "stock" else {}
        t0 = time.monotonic()
        with AirflowEnvironment.create(executor="celery", celery_workers=workers, worker_concurrency=1,
                                       redis_server=broker, config=config) as af:
            boot = time.monotonic() - t0
            time.sleep(args.settle)  # the workers' start-up chatter (mingle, gossip) is over
            scheduler = af.component_pid("scheduler")
            c0, cpu0, w0 = command_counts(broker.port), tree_cpu(scheduler), time.monotonic()
            time.sleep(args.seconds)
            c1, cpu1, w1 = command_counts(broker.port), tree_cpu(scheduler), time.monotonic()
            per_min = 60.0 / (w1 - w0)
            delta = {k: c1.get(k, 0) - c0.get(k, 0) for k in c1}
            delta = {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v > 0}
            return {"side": side, "workers": workers, "boot_s": round(boot, 1), "window_s": round(w1 - w0, 1),
                    "broker_commands_per_min": round(sum(delta.values()) * per_min),
                    "publishes_per_min": round(delta.get("publish", 0) * per_min),
                    "top_commands_per_min": {k: round(v * per_min) for k, v in list(delta.items())[:6]},
                    "scheduler_cpu_s_per_min": round((cpu1 - cpu0) * per_min, 2)}
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2,8,16")
    parser.add_argument("--sides", default="stock,ours")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--settle", type=float, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from airflow_resilience.testing.services import SuiteServices, session_plan

    services = SuiteServices(choices=session_plan()).start()
    rows = []
    try:
        for n in [int(x) for x in args.workers.split(",") if x]:
            for side in args.sides.split(","):
                try:
                    rows.append(measure(side, n, args))
                except Exception as exc:  # what does not fit is reported, and the rest still runs
                    rows.append({"side": side, "workers": n, "error": repr(exc)[:500]})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        services.stop()
    print(f"\nCelery watch on Airflow 3.3.2 (CeleryExecutor, private Redis, PostgreSQL), idle {args.seconds:.0f} s "
          "per deployment")
    print(f"{'workers':>8}{'side':>7}{'broker cmds/min':>17}{'publish/min':>13}{'sched CPU s/min':>17}")
    by = {(r["workers"], r["side"]): r for r in rows}
    for r in rows:
        if "error" in r:
            print(f"{r['workers']:>8}{r['side']:>7}  did not run: {r['error'][:200]}")
            continue
        print(f"{r['workers']:>8}{r['side']:>7}{r['broker_commands_per_min']:>17}{r['publishes_per_min']:>13}"
              f"{r['scheduler_cpu_s_per_min']:>17.2f}")
    for n in sorted({r["workers"] for r in rows}):
        s, o = by.get((n, "stock")), by.get((n, "ours"))
        if s and o and "error" not in s and "error" not in o:
            print(f"{n} workers, ours - stock: {o['broker_commands_per_min'] - s['broker_commands_per_min']:+d} broker "
                  f"commands/min, {o['scheduler_cpu_s_per_min'] - s['scheduler_cpu_s_per_min']:+.2f} scheduler CPU s/min")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
