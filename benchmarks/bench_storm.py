"""A checkpoint storm: N tasks writing once a second at the same time on PostgreSQL, and any lost write.

Two embedded Airflow 3.3.2 deployments (PostgreSQL, LocalExecutor), one storm after the other (N running
tasks are N supervisors and N task runners, ~100+ MB each: both storms at once would need twice that):

* ``stock`` — ``[resilience] enabled = False``, each task writes its counter with a raw
  ``context["task_state_store"].set`` (the hand-written stock checkpoint);
* ``ours``  — the package, ``Checkpoint.set`` + ``flush()`` (``flush_interval=0``).

``bench_cost_storm`` (``benchmarks/dags/bench_cost_dags.py``) maps ``--tasks`` writers; each marks
``ready``, and when all are ready (or ``--ramp-timeout`` passed: the storm then runs with the tasks that
started, and says so) the benchmark releases them at once; each writes for ``--minutes``. Printed per side:
per-write latency p50 / p90 / p99 / max (each call timed in the task; ours also from the package's StatsD
timer ``resilience.checkpoint.write``: one store round trip), writes answered, writes refused, and **lost
writes**: tasks whose state store (read from the metadata database after the run) holds less than the last
write the task got an answer for. Goal: p99 <= 50 ms, 0 lost (printed, never asserted).

    python benchmarks/bench_storm.py [--tasks 50] [--minutes 2] [--sides stock,ours] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from bench_overhead import Sink, pct  # noqa: E402
from marks import read  # noqa: E402

DAG = "bench_cost_storm"


def stored_counter(af, run_id: str, map_index: int, side: str) -> int | None:
    rows = af.state_store(DAG, run_id, "writer", map_index)
    if side == "stock":
        value = rows.get("n")
        return value if isinstance(value, int) else None
    docs = [v for k, v in rows.items() if k.startswith("resilience:checkpoint:try-") and isinstance(v, dict)]
    values = [d.get("values", {}).get("n") for d in docs]
    values = [v for v in values if isinstance(v, int)]
    return max(values) if values else None


def storm(af, sink: Sink, side: str, args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    marks, go = root / "marks", root / "go"
    marks.mkdir()
    seconds = int(round(args.minutes * 60))
    run_id = af.trigger(DAG, conf={"tasks": args.tasks, "marks": str(marks), "go": str(go), "seconds": seconds,
                                   "side": side})
    t0 = time.monotonic()
    ready, ready_at = 0, t0
    while time.monotonic() - t0 < args.ramp_timeout:
        n = sum(1 for p in marks.glob("*.jsonl") if any(e["ev"] == "ready" for e in read(p)))
        if n > ready:
            ready, ready_at = n, time.monotonic()
        if ready >= args.tasks or (ready and time.monotonic() - ready_at > args.stall):
            break
        time.sleep(1)
    ramp = time.monotonic() - t0
    sink.lines.clear()
    sink.recording = True
    go.write_text("go")
    state = af.wait_for_run(DAG, run_id, timeout=seconds + args.ramp_timeout + 600)
    sink.recording = False
    latencies: list[float] = []
    acked = errors = lost = 0
    lost_detail = []
    for p in sorted(marks.glob("*.jsonl"), key=lambda q: int(q.stem)):
        events = read(p)
        acks = [e for e in events if e["ev"] == "ack"]
        errors += sum(1 for e in events if e["ev"] == "error")
        acked += len(acks)
        latencies.extend(e["ms"] for e in acks)
        if acks:
            last = max(e["n"] for e in acks)
            held = stored_counter(af, run_id, int(p.stem), side)
            if held is None or held < last:
                lost += 1
                lost_detail.append({"map_index": int(p.stem), "acknowledged": last, "stored": held})
    timer = sink.timings("resilience.checkpoint.write")
    shutil.rmtree(root, ignore_errors=True)
    return {"side": side, "asked": args.tasks, "tasks": ready, "ramp_s": round(ramp, 1), "seconds": seconds,
            "run_state": state, "writes_acknowledged": acked, "writes_refused": errors,
            "lost_writes": lost, "lost_detail": lost_detail, "latency_ms": summary(latencies),
            "statsd_write_ms": summary(timer)}


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), 2), "p90": round(pct(values, 0.9), 2),
            "p99": round(pct(values, 0.99), 2), "max": round(max(values), 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--sides", default="stock,ours")
    parser.add_argument("--ramp-timeout", type=float, default=900)
    parser.add_argument("--stall", type=float, default=90,
                        help="release the storm when no new task got ready for this many seconds")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from airflow_resilience.testing import AirflowEnvironment
    from airflow_resilience.testing.services import SuiteServices, session_plan

    services = SuiteServices(choices=session_plan()).start()
    slots = args.tasks + 4
    rows = []
    try:
        for side in args.sides.split(","):
            sink = Sink()
            config = {
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(sink.port),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(slots),
                "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(max(128, slots)),
            }
            if side == "stock":
                config["AIRFLOW__RESILIENCE__ENABLED"] = "False"
            try:
                with AirflowEnvironment.create(dags=[HERE / "dags" / "bench_cost_dags.py"], config=config,
                                               parallelism=slots, database="postgres") as af:
                    rows.append(storm(af, sink, side, args))
                    rows[-1]["database"] = af.database_kind
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                sink.close()
    finally:
        services.stop()
    print(f"\ncheckpoint storm on Airflow 3.3.2 (PostgreSQL, LocalExecutor), {args.minutes} min, one write per "
          "second per task; per-write ms (timed in the task)")
    print(f"{'side':6}{'tasks':>7}{'writes':>8}{'refused':>8}{'lost':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
          f"{'statsd p50/p99':>18}")
    for r in rows:
        lat, st = r["latency_ms"], r["statsd_write_ms"]
        stat = f"{st['p50']}/{st['p99']}" if st.get("n") else "-"
        print(f"{r['side']:6}{r['tasks']:>7}{r['writes_acknowledged']:>8}{r['writes_refused']:>8}{r['lost_writes']:>6}"
              f"{lat.get('p50', float('nan')):>8}{lat.get('p90', float('nan')):>8}{lat.get('p99', float('nan')):>8}"
              f"{lat.get('max', float('nan')):>8}{stat:>18}")
        if r["tasks"] < r["asked"]:
            print(f"  note: {r['tasks']} of {r['asked']} tasks started in time; the storm ran with them")
    print("goal: p99 <= 50 ms and 0 lost writes (printed, not asserted)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"tasks": args.tasks, "minutes": args.minutes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
