"""Benchmark: what a checkpoint costs on a real Airflow 3.3.2 (task state store, AIP-103).

Boots Airflow with ``airflow_resilience.testing.harness.AirflowEnvironment`` (api-server, scheduler,
dag-processor, triggerer; LocalExecutor), triggers ``benchmarks/dags/bench_checkpoint_dag.py`` once and
reads the raw measurements the task writes as JSON. All measuring happens inside one running task:

1. per-write cost: N calls of ``context["task_state_store"].set(key, value)`` versus N calls of
   ``Checkpoint.set(key, value)`` with ``flush_interval=0`` (each call writes), same small JSON value,
   in alternating blocks after a warm-up; p50/p99 per call and the ratio ours/raw;
2. loop slowdown: a loop of 1,000 items of ~10 ms each as (a) a plain ``for``, (b) ``ckpt.iterate``
   with ``flush_interval=1.0`` (one write per second) and (c) ``ckpt.iterate`` with ``flush_interval=0``,
   (b) and (c) each with write-behind off (synchronous writes) and on; R repeats in rotated order;
3. one write per second with 1 s items: a plain ``for`` vs ``ckpt.iterate(flush_interval=0)`` with
   write-behind off vs on, ``--slow-repeats`` repeats of ``--slow-items`` items, rotated order.

Parts 2 and 3 report per variant the median wall time over the repeats, the slowdown against the plain
loop (median, and p99 of the per-repeat slowdowns, each against the plain loop of the same repeat) and the
p50/p99 of the per-item times (one item's start to the next's).

Usage::

    python benchmarks/bench_checkpoint.py [--database sqlite|postgres|auto] [--writes N] [--repeats R]

Prints a table and writes everything (summary and raw samples) to ``reports/bench_checkpoint.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = Path(__file__).resolve().parent / "dags" / "bench_checkpoint_dag.py"
DAG_ID = "bench_checkpoint"
TASK_ID = "measure"
REPORT = ROOT / "reports" / "bench_checkpoint.json"

log = logging.getLogger("bench_checkpoint")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), same as numpy's default."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize_writes(raw: dict) -> dict:
    out = {}
    for kind in ("raw", "ours"):
        ms = [ns / 1e6 for ns in raw[f"{kind}_ns"]]
        out[kind] = {
            "n": len(ms),
            "p50_ms": percentile(ms, 50),
            "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99),
            "mean_ms": statistics.fmean(ms),
            "min_ms": min(ms),
            "max_ms": max(ms),
        }
    # p50 of each block, in the order the blocks ran per kind: shows how much of a difference is drift.
    offsets = {"raw": 0, "ours": 0}
    for kind in ("raw", "ours"):
        out[kind]["block_p50_ms"] = []
    for block in raw["blocks"]:
        kind, n = block["kind"], block["n"]
        chunk = raw[f"{kind}_ns"][offsets[kind] : offsets[kind] + n]
        offsets[kind] += n
        out[kind]["block_p50_ms"].append(percentile([ns / 1e6 for ns in chunk], 50))
    out["ratio"] = {
        "p50": out["ours"]["p50_ms"] / out["raw"]["p50_ms"],
        "p99": out["ours"]["p99_ms"] / out["raw"]["p99_ms"],
        "mean": out["ours"]["mean_ms"] / out["raw"]["mean_ms"],
    }
    return out


def summarize_loops(loops: list[dict], items: int) -> dict:
    """Per variant: wall medians over repeats, slowdown vs the plain loop (median and p99 of the per-repeat
    slowdowns, each against the plain loop of the same repeat), per-item time p50/p99."""
    by: dict[str, list[dict]] = {}
    for row in loops:
        by.setdefault(row["variant"], []).append(row)
    out: dict = {}
    plain_by_rep = {r["repeat"]: r["wall_ns"] for r in by["plain"]}
    plain_items = [ns / 1e6 for r in by["plain"] for ns in r.get("item_ns", [])]
    for name, rows in by.items():
        walls = [r["wall_ns"] / 1e9 for r in rows]
        item_ms = [ns / 1e6 for r in rows for ns in r.get("item_ns", [])]
        out[name] = {
            "walls_s": walls,
            "median_s": statistics.median(walls),
            "store_writes": [r["store_writes"] for r in rows],
            "median_store_writes": statistics.median(r["store_writes"] for r in rows),
            "item_p50_ms": percentile(item_ms, 50),
            "item_p99_ms": percentile(item_ms, 99),
        }
    base = out["plain"]["median_s"]
    for name in by:
        if name == "plain":
            continue
        med = out[name]["median_s"]
        out[name]["slowdown_pct"] = (med - base) / base * 100.0
        out[name]["overhead_per_item_ms"] = (med - base) / items * 1e3
        per = [(r["wall_ns"] - plain_by_rep[r["repeat"]]) / plain_by_rep[r["repeat"]] * 100.0 for r in by[name]]
        out[name]["slowdown_pct_per_repeat"] = per
        out[name]["slowdown_pct_median_of_repeats"] = statistics.median(per)
        out[name]["slowdown_pct_p99_of_repeats"] = percentile(per, 99)
        if plain_items:
            out[name]["item_p99_over_plain_ms"] = out[name]["item_p99_ms"] - percentile(plain_items, 99)
    return out


def _loop_table(lp: dict, labels: list[tuple[str, str]]) -> list[str]:
    lines = [f"   {'':44}{'wall s':>8}{'slowdown':>10}{'p99 rep':>9}{'item p50':>10}{'item p99':>10}{'writes':>8}"]
    for name, label in labels:
        s = lp[name]
        slow = "-" if name == "plain" else f"{s['slowdown_pct']:+.2f}%"
        p99 = "-" if name == "plain" else f"{s['slowdown_pct_p99_of_repeats']:+.2f}%"
        lines.append(
            f"   {label:44}{s['median_s']:8.2f}{slow:>10}{p99:>9}{s['item_p50_ms']:10.2f}{s['item_p99_ms']:10.2f}"
            f"{s['median_store_writes']:8g}"
        )
    for name, label in labels:
        if name != "plain":
            per = ", ".join(f"{x:+.2f}%" for x in lp[name]["slowdown_pct_per_repeat"])
            lines.append(f"   per repeat vs plain, {label.split(')')[0]}): {per}")
    return lines


def render(summary: dict) -> str:
    w, lp, meta = summary["writes"], summary["loops"], summary["meta"]
    p = meta["params"]
    lines = []
    lines.append(
        f"airflow-resilience checkpoint benchmark — Airflow {meta['airflow_version']}, "
        f"database: {meta['database']}, {meta['cpus']} CPUs, Python {meta['python']}"
    )
    lines.append("")
    lines.append(
        f"1. Per-write cost inside one task: {p['writes']} calls each, {p['blocks']} alternating blocks, "
        f"{p['warmup']} warm-up calls each"
    )
    lines.append(f"   {'':34}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}")
    for kind, label in (("raw", 'raw task_state_store.set'), ("ours", "Checkpoint.set (flush_interval=0)")):
        s = w[kind]
        lines.append(
            f"   {label:34}{s['p50_ms']:9.3f}{s['p90_ms']:9.3f}{s['p99_ms']:9.3f}{s['mean_ms']:9.3f}{s['max_ms']:9.3f}"
        )
    r = w["ratio"]
    lines.append(f"   {'ratio ours/raw':34}{r['p50']:8.2f}x{'':9}{r['p99']:8.2f}x{r['mean']:8.2f}x")
    for kind, label in (("raw", "raw"), ("ours", "ours")):
        per = ", ".join(f"{x:.2f}" for x in w[kind]["block_p50_ms"])
        lines.append(f"   p50 ms per block in run order, {label:4}  {per}")
    lines.append(
        f"   (ours writes the whole checkpoint document, {meta['ours_document_bytes']} bytes, vs the raw "
        f"value, {meta['raw_value_bytes']} bytes; ours made {meta['ours_store_writes']} store writes for "
        f"{p['writes']} calls)"
    )
    lines.append("")
    lines.append(
        f"2. Loop of {p['items']} items x {p['work_s'] * 1000:g} ms (time.sleep), "
        f"{p['repeats']} repeats (rotated order); wall = median; p99 rep = p99 of the per-repeat slowdowns; "
        "item times in ms"
    )
    bi = p["batched_interval"]
    lines += _loop_table(lp, [
        ("plain", "(a) plain for loop"),
        ("batched", f"(b) iterate flush_interval={bi:g}, sync"),
        ("batched_wb", f"(b') iterate flush_interval={bi:g}, write-behind"),
        ("every_item", "(c) iterate flush_interval=0, sync"),
        ("every_item_wb", "(c') iterate flush_interval=0, write-behind"),
    ])
    sl = summary["slow_loops"]
    lines.append("")
    lines.append(
        f"3. One write per second: loop of {p['slow_items']} items x {p['slow_work_s']:g} s, iterate "
        f"flush_interval=0, {p['slow_repeats']} repeats (rotated order)"
    )
    lines += _loop_table(sl, [
        ("plain", "(a) plain for loop"),
        ("sync", "(s) iterate, write-behind off"),
        ("write_behind", "(w) iterate, write-behind on"),
    ])
    lines.append("")
    lw, ll = meta["load1_writes"], meta["load1_loops"]
    lines.append(
        f"Host 1-min load average ({meta['cpus']} CPUs; this benchmark's own Airflow included): "
        f"part 1 {min(lw):.2f}-{max(lw):.2f}, part 2 {min(ll):.2f}-{max(ll):.2f}"
    )
    lines.append(
        f"Airflow boot {meta['boot_seconds']:.1f}s, task {meta['task_seconds']:.1f}s, "
        f"run {meta['run_seconds']:.1f}s, total {meta['total_seconds']:.1f}s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "auto"), default="auto")
    parser.add_argument("--writes", type=int, default=300, help="measured calls per kind (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the loop comparison (default 3)")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks for the write test")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls per kind")
    parser.add_argument("--items", type=int, default=1000, help="items per loop")
    parser.add_argument("--work-ms", type=float, default=10.0, help="work per item in ms (time.sleep)")
    parser.add_argument("--slow-repeats", type=int, default=5, help="repeats of part 3 (1 s items)")
    parser.add_argument("--slow-items", type=int, default=10, help="items per loop in part 3")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.writes < args.blocks or args.repeats < 1 or args.items < 1:
        parser.error("need --writes >= --blocks, --repeats >= 1 and --items >= 1")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-checkpoint-"))
    # Importing the package imports Airflow (airflow_resilience.errors subclasses Airflow's exceptions),
    # which reads and may create files under AIRFLOW_HOME. Point this process at a scratch home so the
    # user's own AIRFLOW_HOME is never touched; the harness gives its processes their own home anyway.
    os.environ["AIRFLOW_HOME"] = str(workdir / "client-home")
    # Imported here so that --help works without the package's test extras.
    from airflow_resilience.testing.harness import AirflowEnvironment

    raw_path = workdir / "raw.json"
    conf = {
        "out": str(raw_path),
        "writes": args.writes,
        "blocks": args.blocks,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "items": args.items,
        "work_s": args.work_ms / 1000.0,
        "batched_interval": 1.0,
        "slow_repeats": args.slow_repeats,
        "slow_items": args.slow_items,
        "slow_work_s": 1.0,
    }
    # Expected task time: 3 loops x items x work, plus the writes; generous margin for the run timeout.
    expected = (args.repeats * 5 * args.items * args.work_ms / 1000.0 + 2 * (args.writes + args.warmup) * 0.05
                + args.slow_repeats * 3 * args.slow_items * 1.0 + args.repeats * args.items * 0.01)
    run_timeout = max(300.0, 4 * expected)

    af = None
    try:
        log.info("booting Airflow (database=%s)...", args.database)
        af = AirflowEnvironment.create(
            dags=[DAG_FILE], database=None if args.database == "auto" else args.database
        )
        boot = time.monotonic() - t_start
        log.info("Airflow up on %s with %s in %.1fs", af.api_url, af.database_kind, boot)
        af.wait_for_dag_files([DAG_FILE.name])
        t_run = time.monotonic()
        run_id = af.trigger(DAG_ID, conf=conf)
        log.info("triggered %s run %s; expected task time ~%.0fs", DAG_ID, run_id, expected)
        state = af.wait_for_run(DAG_ID, run_id, timeout=run_timeout)
        run_seconds = time.monotonic() - t_run
        if state != "success" or not raw_path.exists():
            ti = af.task_instance(DAG_ID, run_id, TASK_ID)
            print(f"benchmark run ended {state!r} (task {ti.state!r}); task log:", file=sys.stderr)
            print(af.task_log(DAG_ID, run_id, TASK_ID, ti.try_number)[-6000:], file=sys.stderr)
            return 1
        raw = json.loads(raw_path.read_text())
        stored = af.state_store(DAG_ID, run_id, TASK_ID)
        database = af.database_kind
    finally:
        if af is not None:
            af.stop()

    # Sanity: the writes landed (raw set ignores refusals silently, so check the final values).
    doc = stored.get("resilience:checkpoint:try-1", {})
    checks = {
        "raw_value_stored": stored.get("bench:raw", {}).get("counter"),
        "ours_value_stored": (doc.get("values") or {}).get("bench", {}).get("counter"),
        "loops_complete": sorted(k for k, v in (doc.get("loops") or {}).items() if v.get("complete")),
        "state_store_keys": sorted(stored),
    }

    import importlib.metadata as md

    summary = {
        "meta": {
            "created": datetime.now(timezone.utc).isoformat(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "database": database,
            "airflow_version": md.version("apache-airflow"),
            "python": raw.get("python", platform.python_version()),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "params": raw["params"],
            "ours_document_bytes": raw["writes"]["ours_document_bytes"],
            "raw_value_bytes": raw["writes"]["raw_value_bytes"],
            "ours_store_writes": raw["writes"]["ours_store_writes"],
            "load1_writes": [raw["writes"]["load1_before"]]
            + [b["load1"] for b in raw["writes"]["blocks"]],
            "load1_loops": [row["load1"] for row in raw["loops"] + raw["slow_loops"]],
            "boot_seconds": boot,
            "run_seconds": run_seconds,
            "task_seconds": raw["task_seconds"],
            "total_seconds": time.monotonic() - t_start,
            "run_id": run_id,
        },
        "writes": summarize_writes(raw["writes"]),
        "loops": summarize_loops(raw["loops"], raw["params"]["items"]),
        "slow_loops": summarize_loops(raw["slow_loops"], raw["params"]["slow_items"]),
        "checks": checks,
        "raw": raw,
    }
    table = render(summary)
    print()
    print(table)
    print()
    print(f"state store after the run: raw counter={checks['raw_value_stored']}, "
          f"checkpoint counter={checks['ours_value_stored']}, complete loops={len(checks['loops_complete'])}")
    summary["table"] = table
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2))
    print(f"full result written to {args.output}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
