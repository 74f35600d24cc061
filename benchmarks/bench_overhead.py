"""What the package costs a task that never checkpoints, and what it costs the scheduler loop.

Two embedded Airflow 3.3.2 deployments in the same run, booted side by side: stock (the package switched
off, ``[resilience] enabled = False``) and ours (defaults: policy, attempt record, failure gate, listeners,
lost-worker detector). The same DAGs are triggered ``--runs`` times on each, alternating sides, one run at
a time per side. Printed per side:

* the task instance's run time (``end_date - start_date``: from the runner's start to its report — the
  attempt record, the task-end listener and the gate on the report are inside it) of a no-op task and of a
  1 s task (``bench_cost_second``), median and p99, and ours / stock; the goal (+2 % at most for the 1 s
  task) is printed beside the figure, never asserted;
* the scheduler loop (Airflow's own timer ``scheduler.scheduler_loop_duration``, received over StatsD on
  loopback during the runs), median and p99;
* with ``--running M``: the scheduler loop while M tasks are running at once (``bench_cost_hold``: M mapped
  tasks that wait on a file; one that starts with less than ``--min-free-mib`` available ends at once, so
  the machine is never filled), one side after the other (each running task is a supervisor and a task runner
  process, ~100+ MB each, so both sides at once would need twice the memory). When fewer than M reach
  ``running`` within ``--ramp-timeout`` the loop is measured at the number that did, and that number is
  printed: it is the largest that fitted;
* with ``--losses N`` (ours only): N lost workers (SIGKILL of a running task's supervisor), and the time
  the scheduler-side listener spent judging each (the package's timer ``resilience.scheduler_listener``,
  inside the scheduler loop).

    python benchmarks/bench_overhead.py [--runs 30] [--running 200] [--window 60] [--losses 5]
        [--database auto|postgres|sqlite] [--json out.json]
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


def duration(af, dag_id: str, run_id: str) -> float:
    rows = af.sql("SELECT start_date, end_date FROM task_instance WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
    from airflow_resilience.testing.records import _when

    start, end = _when(rows[0][0]), _when(rows[0][1])
    return (end - start).total_seconds()


GOAL = 0.02  # the 1 s task's run time, ours against stock: at most +2 % (a goal printed beside the figure)
TASKS = (("no-op task run time", "bench_noop"), ("1 s task run time", "bench_cost_second"))


def table_row(label: str, data: dict[str, list[float]], unit: str, note: str = "") -> dict:
    med = {s: statistics.median(v) for s, v in data.items() if v}
    p99 = {s: pct(v, 0.99) for s, v in data.items() if v}
    ratio = med["ours"] / med["stock"] if med.get("stock") and med.get("ours") else float("nan")
    print(f"{label + ' (' + unit + ')':30}{med.get('stock', float('nan')):>14.3f}{p99.get('stock', float('nan')):>11.3f}"
          f"{med.get('ours', float('nan')):>13.3f}{p99.get('ours', float('nan')):>10.3f}{ratio:>8.3f}  {note}")
    return {"unit": unit, "median": med, "p99": p99, "ratio": round(ratio, 4),
            "samples": {s: len(v) for s, v in data.items()}}


def header() -> None:
    print(f"{'':30}{'stock median':>14}{'stock p99':>11}{'ours median':>13}{'ours p99':>10}{'ratio':>8}")


def running_tasks(af, run_id: str) -> int:
    return af.sql("SELECT count(*) FROM task_instance WHERE dag_id = 'bench_cost_hold' AND run_id = :r"
                  " AND task_id = 'hold' AND state = 'running'", r=run_id)[0][0]


def scheduler_uss_mib(af) -> float:
    """Memory of the scheduler's process tree (its LocalExecutor workers = the supervisors, and their task
    runners), MiB: the sum of each process's USS (pages only it holds; RSS would count the pages the forks
    share once per process)."""
    import psutil

    try:
        root = psutil.Process(af.component_pid("scheduler"))
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().uss
        except psutil.Error:
            pass
    return total / 2**20


def loop_under_load(af, sink: Sink, args) -> dict:
    """The scheduler loop while ``args.running`` tasks run (or as many as reached ``running``)."""
    import tempfile

    hold = Path(tempfile.mkdtemp(prefix="bench-hold-")) / "hold"
    hold.write_text("hold")
    run_id = af.trigger("bench_cost_hold", conf={"tasks": args.running, "hold": str(hold), "min_free_mib": args.min_free_mib,
                                                  "seconds": args.ramp_timeout + args.window + 300})
    t0 = time.monotonic()
    best, best_at = 0, t0
    while time.monotonic() - t0 < args.ramp_timeout:
        n = running_tasks(af, run_id)
        if n > best:
            best, best_at = n, time.monotonic()
        if n >= args.running or time.monotonic() - best_at > args.stall:
            break  # all running, or no new task started for --stall seconds (what fits is running)
        time.sleep(1)
    ramp = time.monotonic() - t0
    uss = scheduler_uss_mib(af)
    sink.lines.clear()
    sink.recording = True
    time.sleep(args.window)
    sink.recording = False
    during = running_tasks(af, run_id)
    hold.unlink()
    state = af.wait_for_run("bench_cost_hold", run_id, timeout=max(600, args.running * 10))
    hold.parent.rmdir()
    loops = sink.timings("scheduler.scheduler_loop_duration")
    return {"asked": args.running, "running": min(best, during) if during else best, "running_peak": best,
            "ramp_s": round(ramp, 1), "scheduler_tree_uss_mib": round(uss), "run_state": state, "loops": loops}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--losses", type=int, default=5)
    parser.add_argument("--running", type=int, default=0,
                        help="M tasks running at once while the scheduler loop is timed (0: skip)")
    parser.add_argument("--window", type=float, default=60, help="seconds the loop is timed with M running")
    parser.add_argument("--ramp-timeout", type=float, default=900)
    parser.add_argument("--min-free-mib", type=float, default=3072,
                        help="a held task that starts with less memory available than this ends at once")
    parser.add_argument("--stall", type=float, default=90,
                        help="stop waiting for more tasks to start after this many seconds without a new one")
    args = parser.parse_args()

    from airflow_resilience.testing import AirflowEnvironment
    from airflow_resilience.testing.services import SuiteServices, session_plan

    services = SuiteServices(choices=session_plan()).start()  # a private PostgreSQL when the binaries are there
    sinks = {"stock": Sink(), "ours": Sink()}
    envs: dict = {}
    boots: dict = {}
    slots = max(4, args.running + 4)

    def boot(side: str) -> None:
        config = {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(sinks[side].port),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(slots),
            "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(max(128, slots)),
        }
        if side == "stock":
            config["AIRFLOW__RESILIENCE__ENABLED"] = "False"
        try:
            envs[side] = AirflowEnvironment.create(
                dags=[HERE / "dags" / "bench_noop_dags.py", HERE / "dags" / "bench_cost_dags.py"],
                database=args.database, config=config, parallelism=slots,
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
        durations: dict[str, dict[str, list[float]]] = {dag: {"stock": [], "ours": []} for _, dag in TASKS}
        started = time.monotonic()
        for i in range(args.runs):
            for side in (("stock", "ours") if i % 2 == 0 else ("ours", "stock")):
                af = envs[side]
                for _, dag_id in TASKS:
                    run_id = af.trigger(dag_id)
                    state = af.wait_for_run(dag_id, run_id, timeout=300)
                    if state != "success":
                        raise RuntimeError(f"{side}: run {dag_id}/{run_id} ended {state}")
                    durations[dag_id][side].append(duration(af, dag_id, run_id))
        elapsed = time.monotonic() - started
        for sink in sinks.values():
            sink.recording = False
        loops = {side: sinks[side].timings("scheduler.scheduler_loop_duration") for side in sinks}
        result: dict = {"runs": args.runs, "database": envs["ours"].database_kind, "elapsed_s": round(elapsed, 1)}
        print(f"overhead on Airflow 3.3.2 ({result['database']}), {args.runs} runs of each task per side, "
              f"{elapsed:.0f} s")
        header()
        for label, dag_id in TASKS:
            goal = f"goal ratio <= {1 + GOAL:.2f} (not asserted)" if dag_id == "bench_cost_second" else ""
            result[label] = table_row(label, durations[dag_id], "s", goal)
            if dag_id == "bench_cost_second":
                extra = {s: statistics.median(v) - 1.0 for s, v in durations[dag_id].items() if v}
                print(f"{'':30}time beyond the 1 s sleep: stock {extra['stock'] * 1000:.0f} ms, "
                      f"ours {extra['ours'] * 1000:.0f} ms")
        result["scheduler loop"] = table_row("scheduler loop", loops, "ms", "(during the runs above)")
        if args.running:
            under: dict = {}
            for side in ("stock", "ours"):
                under[side] = loop_under_load(envs[side], sinks[side], args)
                u = under[side]
                print(f"{side}: {u['running']} of {u['asked']} tasks running (peak {u['running_peak']}, ramp "
                      f"{u['ramp_s']} s), scheduler tree USS {u['scheduler_tree_uss_mib']} MiB, "
                      f"{len(u['loops'])} loops timed in {args.window:.0f} s, run {u['run_state']}", flush=True)
            header()
            label = f"scheduler loop, {min(u['running'] for u in under.values())} running"
            result["scheduler loop under load"] = table_row(label, {s: u["loops"] for s, u in under.items()}, "ms")
            result["scheduler loop under load"]["running"] = {s: u["running"] for s, u in under.items()}
            result["scheduler loop under load"]["asked"] = args.running
            result["scheduler loop under load"]["scheduler_tree_uss_mib"] = {
                s: u["scheduler_tree_uss_mib"] for s, u in under.items()}
            if any(u["running"] < args.running for u in under.values()):
                print(f"note: fewer than the {args.running} tasks asked for were running at once; the figure is "
                      "for the number shown (the largest that fitted)")
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
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        for af in envs.values():
            af.stop()
        for sink in sinks.values():
            sink.close()
        services.stop()


if __name__ == "__main__":
    raise SystemExit(main())
