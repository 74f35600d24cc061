"""What the package costs a task that never checkpoints, and what it costs the scheduler loop.

Two embedded Airflow 3.3.2 deployments in the same run, booted side by side: stock (the package switched
off, ``[resilience] enabled = False``) and ours (defaults: policy, attempt record, failure gate, listeners,
lost-worker detector). The same one-task no-op DAG is triggered ``--runs`` times on each, alternating
sides, one run at a time per side. Printed per side:

* the task instance's run time (``end_date - start_date``: from the runner's start to its report — the
  attempt record, the task-end listener and the gate on the report are inside it), median and p99;
* the scheduler loop (Airflow's own timer ``scheduler.scheduler_loop_duration``, received over StatsD on
  loopback during the runs), median and p99;
* ours / stock ratios of the medians;
* with ``--losses N`` (ours only): N lost workers (SIGKILL of a running task's supervisor), and the time
  the scheduler-side listener spent judging each (the package's timer ``resilience.scheduler_listener``,
  inside the scheduler loop).

    python benchmarks/bench_overhead.py [--runs 30] [--losses 5] [--database auto|postgres|sqlite] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


class Sink:
    """StatsD lines on a loopback UDP port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.recording = False
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            if self.recording:
                self.lines.extend(data.decode(errors="replace").splitlines())

    def timings(self, name: str) -> list[float]:
        out = []
        for line in self.lines:
            metric, _, rest = line.partition(":")
            if metric.split(",")[0] == f"airflow.{name}" and rest.endswith("|ms"):
                out.append(float(rest.split("|")[0]))
        return out

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def duration(af, run_id: str) -> float:
    rows = af.sql(
        "SELECT start_date, end_date FROM task_instance WHERE dag_id = 'bench_noop' AND run_id = :r", r=run_id
    )
    from airflow_resilience.testing.harness import _when

    start, end = _when(rows[0][0]), _when(rows[0][1])
    return (end - start).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--losses", type=int, default=5)
    args = parser.parse_args()

    from airflow_resilience.testing import AirflowEnvironment

    sinks = {"stock": Sink(), "ours": Sink()}
    envs: dict = {}
    boots: dict = {}

    def boot(side: str) -> None:
        config = {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(sinks[side].port),
        }
        if side == "stock":
            config["AIRFLOW__RESILIENCE__ENABLED"] = "False"
        try:
            envs[side] = AirflowEnvironment.create(
                dags=[HERE / "dags" / "bench_noop_dags.py"], database=args.database, config=config
            )
        except Exception as exc:  # reported below
            boots[side] = exc

    threads = [threading.Thread(target=boot, args=(s,)) for s in ("stock", "ours")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if boots:
            raise RuntimeError(f"could not boot: {boots}")
        for sink in sinks.values():
            sink.recording = True
        durations: dict[str, list[float]] = {"stock": [], "ours": []}
        started = time.monotonic()
        for i in range(args.runs):
            for side in (("stock", "ours") if i % 2 == 0 else ("ours", "stock")):
                af = envs[side]
                run_id = af.trigger("bench_noop")
                state = af.wait_for_run("bench_noop", run_id, timeout=300)
                if state != "success":
                    raise RuntimeError(f"{side}: run {run_id} ended {state}")
                durations[side].append(duration(af, run_id))
        elapsed = time.monotonic() - started
        for sink in sinks.values():
            sink.recording = False
        loops = {side: sinks[side].timings("scheduler.scheduler_loop_duration") for side in sinks}
        result: dict = {"runs": args.runs, "database": envs["ours"].database_kind, "elapsed_s": round(elapsed, 1)}
        print(f"overhead on Airflow 3.3.2 ({result['database']}), {args.runs} no-op runs per side, {elapsed:.0f} s")
        print(f"{'':24}{'stock median':>14}{'stock p99':>11}{'ours median':>13}{'ours p99':>10}{'ratio':>8}")
        for label, data, unit in (("task run time", durations, "s"), ("scheduler loop", loops, "ms")):
            med = {s: statistics.median(v) for s, v in data.items() if v}
            p99 = {s: pct(v, 0.99) for s, v in data.items() if v}
            ratio = med["ours"] / med["stock"] if med.get("stock") else float("nan")
            print(f"{label + ' (' + unit + ')':24}{med['stock']:>14.3f}{p99['stock']:>11.3f}{med['ours']:>13.3f}"
                  f"{p99['ours']:>10.3f}{ratio:>8.3f}")
            result[label] = {"unit": unit, "median": med, "p99": p99, "ratio": round(ratio, 4),
                             "samples": {s: len(v) for s, v in data.items()}}
        if args.losses:
            import os
            import signal

            af, sink = envs["ours"], sinks["ours"]
            sink.lines.clear()
            sink.recording = True
            for _ in range(args.losses):
                run_id = af.trigger("bench_lost")
                af.wait_for_task("bench_lost", run_id, "sleepy", {"running"}, timeout=120)
                time.sleep(2)
                os.kill(af.task_processes("bench_lost", run_id, "sleepy").supervisor, signal.SIGKILL)
                af.wait_for_run("bench_lost", run_id, timeout=300)
            time.sleep(2)
            sink.recording = False
            listener = sink.timings("resilience.scheduler_listener")
            if listener:
                print(f"scheduler listener (ms), {len(listener)} lost workers judged: median "
                      f"{statistics.median(listener):.2f}, max {max(listener):.2f}")
                result["scheduler_listener_ms"] = {"median": statistics.median(listener), "max": max(listener),
                                                   "samples": len(listener)}
            else:
                print("scheduler listener: no timing received")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        for af in envs.values():
            af.stop()
        for sink in sinks.values():
            sink.close()


if __name__ == "__main__":
    raise SystemExit(main())
