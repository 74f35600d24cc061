"""Where the time of an OOM-style recovery goes: the phases from a SIGKILL of the task runner to the next
try's first progress, stock against the package, medians over repeats.

Two embedded Airflow 3.3.2 deployments booted side by side (PostgreSQL, LocalExecutor): stock
(``[resilience] enabled = False``) and ours (defaults, ``[resilience] infra_retry_delay`` 2 s). The DAGs are
``bench_cost_recover_r1`` / ``_r0`` (``benchmarks/dags/bench_cost_dags.py``): ``--items`` × ``--seconds`` s.
Three sides, one run at a time, alternating:

* ``stock``       — stock Airflow, ``retries=1``, ``retry_delay`` 2 s, a plain loop;
* ``ours-plain``  — the package, ``retries=0`` (the next try is the infrastructure grant), a plain loop:
  the package's attempt-start cost without the checkpoint;
* ``ours``        — the package, ``retries=0``, ``Checkpoint.iterate``.

After ``--kill-after`` finished items of try 1 the runner is SIGKILLed (``af.signal_runner``: an OOM kill as
the supervisor sees it). Phases, each from the previous one (and from the kill, cumulative):

  kill -> try 1 failure recorded   ``task_instance_history.end_date`` of try 1 (the supervisor's report time)
  -> try 2 scheduled               ``task_instance.scheduled_dttm`` (the retry delay ends, the scheduler sees it)
  -> try 2 queued                  ``task_instance.queued_dttm``
  -> try 2 start                   ``task_instance.start_date`` (the supervisor's ``/run`` call)
  -> first line of code            the task's own mark at the top of its function (the DAG parse, the policy,
                                   the listeners, ``pre_execute``)
  -> first item                    the mark at the start of the first loop item (the checkpoint opened and
                                   read for ``ours``)

    python benchmarks/bench_recovery.py [--repeats 10] [--sides stock,ours-plain,ours] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from marks import read, wait_mark  # noqa: E402

SIDES = {  # side -> (deployment, dag, checkpoint)
    "stock": ("stock", "bench_cost_recover_r1", False),
    "ours-plain": ("ours", "bench_cost_recover_r0", False),
    "ours": ("ours", "bench_cost_recover_r0", True),
}
PHASES = ("failure recorded", "scheduled", "queued", "start", "first line", "first item")


def epoch(value) -> float | None:
    from airflow_resilience.testing.records import _when

    when = _when(value)
    return None if when is None else when.timestamp()


def one(af, side: str, args) -> dict:
    _, dag_id, checkpoint = SIDES[side]
    marks = Path(tempfile.mkdtemp(prefix="bench-recovery-")) / "marks.jsonl"
    conf = {"marks": str(marks), "items": args.items, "seconds": args.seconds, "checkpoint": checkpoint}
    run_id = af.trigger(dag_id, conf=conf)
    wait_mark(marks, lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= args.kill_after - 1, timeout=300)
    killed = time.time()
    af.signal_runner(dag_id, run_id, "work", signal.SIGKILL)
    try:
        state = af.wait_for_run(dag_id, run_id, timeout=args.run_timeout)
    except TimeoutError as exc:  # counted and shown, not hidden: the run is left to the deployment's stop
        print(f"{side}: {run_id} did not finish in {args.run_timeout:.0f} s: {str(exc)[:400]}", flush=True)
        state = "timeout"
    history = af.sql(
        "SELECT try_number, end_date FROM task_instance_history WHERE dag_id = :d AND run_id = :r ORDER BY try_number",
        d=dag_id, r=run_id,
    )
    current = af.sql(
        "SELECT try_number, scheduled_dttm, queued_dttm, start_date, end_date, state FROM task_instance"
        " WHERE dag_id = :d AND run_id = :r AND task_id = 'work'", d=dag_id, r=run_id,
    )[0]
    events = read(marks)

    def mark_at(ev: str, t: int) -> float | None:
        found = [e["at"] for e in events if e["ev"] == ev and e["t"] == t]
        return found[0] if found else None

    failed1 = next((epoch(end) for t, end in history if t == 1), None)
    points = {
        "failure recorded": failed1,
        "scheduled": epoch(current[1]),
        "queued": epoch(current[2]),
        "start": epoch(current[3]),
        "first line": mark_at("first-line", 2),
        "first item": mark_at("first-item", 2),
    }
    redone = sorted({e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 1}
                    & {e["i"] for e in events if e["ev"] == "item-end" and e["t"] == 2})
    if state == "timeout":
        return {"side": side, "run_id": run_id, "state": state, "tries": current[0], "items_redone": 0,
                "since_kill": {k: None for k in PHASES}, "ti_state": current[5]}
    row = {"side": side, "run_id": run_id, "state": state, "tries": current[0], "items_redone": len(redone),
           "since_kill": {k: (None if v is None else round(v - killed, 3)) for k, v in points.items()}}
    marks.unlink(missing_ok=True)
    marks.parent.rmdir()
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sides", default="stock,ours-plain,ours")
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--kill-after", type=int, default=2)
    parser.add_argument("--run-timeout", type=float, default=180)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        parser.error(f"--sides: unknown {unknown}; choose from {', '.join(SIDES)}")

    from airflow_resilience.testing import AirflowEnvironment
    from airflow_resilience.testing.services import SuiteServices, session_plan

    services = SuiteServices(choices=session_plan()).start()
    envs: dict = {}
    failures: dict = {}

    def boot(name: str) -> None:
        config = {"AIRFLOW__RESILIENCE__ENABLED": "False"} if name == "stock" else {}
        try:
            envs[name] = AirflowEnvironment.create(dags=[HERE / "dags" / "bench_cost_dags.py"], config=config)
        except Exception as exc:  # reported below
            failures[name] = exc

    needed = sorted({SIDES[s][0] for s in sides})
    threads = [threading.Thread(target=boot, args=(n,)) for n in needed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows: list[dict] = []
    try:
        if failures:
            raise RuntimeError(f"could not boot: {failures}")
        started = time.monotonic()
        for i in range(args.repeats):
            order = sides if i % 2 == 0 else list(reversed(sides))
            for side in order:
                rows.append(one(envs[SIDES[side][0]], side, args))
                print(json.dumps(rows[-1]), flush=True)
        elapsed = time.monotonic() - started
        database = next(iter(envs.values())).database_kind
    finally:
        for af in envs.values():
            af.stop()
        services.stop()

    result: dict = {"repeats": args.repeats, "items": args.items, "seconds": args.seconds, "database": database,
                    "elapsed_s": round(elapsed, 1), "sides": {}}
    print(f"\nOOM-style recovery phases on Airflow 3.3.2 ({database}), {args.repeats} repeats per side, "
          f"{elapsed:.0f} s; medians in seconds (p90 in brackets)")
    print(f"{'phase':22}" + "".join(f"{s:>22}" for s in sides))
    for k, phase in enumerate(PHASES):
        cells, cum_cells = [], []
        for side in sides:
            mine = [r for r in rows if r["side"] == side and r["state"] == "success"]
            steps, cum = [], []
            for r in mine:
                now = r["since_kill"][phase]
                before = 0.0 if k == 0 else r["since_kill"][PHASES[k - 1]]
                if now is not None and before is not None:
                    steps.append(now - before)
                if now is not None:
                    cum.append(now)
            med = statistics.median(steps) if steps else float("nan")
            p90 = _pct(steps, 0.9) if steps else float("nan")
            cmed = statistics.median(cum) if cum else float("nan")
            cells.append(f"{med:>8.3f} ({p90:.3f})")
            cum_cells.append(cmed)
            entry = result["sides"].setdefault(side, {"runs": len(mine), "phases": {}})
            entry["phases"][phase] = {"step_median": med, "step_p90": p90, "since_kill_median": cmed}
        print(f"{'-> ' + phase:22}" + "".join(f"{c:>22}" for c in cells))
        print(f"{'   (since kill)':22}" + "".join(f"{c:>22.3f}" for c in cum_cells))
    for side in sides:
        mine = [r for r in rows if r["side"] == side]
        bad = [r["run_id"] for r in mine if r["state"] != "success"]
        redone = [r["items_redone"] for r in mine]
        print(f"{side}: {len(mine) - len(bad)}/{len(mine)} runs succeeded, tries {sorted({r['tries'] for r in mine})}, "
              f"items redone per run (median) {statistics.median(redone) if redone else 0}"
              + (f", failed runs {bad}" if bad else ""))
        result["sides"].setdefault(side, {})["failed_runs"] = bad
    base = result["sides"].get("stock", {}).get("phases", {}).get("first item", {}).get("since_kill_median")
    for side in sides:
        if side != "stock" and base:
            mine = result["sides"][side]["phases"]["first item"]["since_kill_median"]
            print(f"kill -> first item, {side} / stock: {mine:.3f} / {base:.3f} s = {mine / base:.3f}")
    result["rows"] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


if __name__ == "__main__":
    raise SystemExit(main())
