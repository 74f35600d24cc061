"""Benchmark: watermarks on a real Airflow 3.3.2, and CDC throughput through a logical replication slot.

1. Cost per run: a task that reads and writes a high-water mark with ``Variable.get/set`` (stock) against
   one that opens a ``Watermark`` and advances it; both in the same Airflow, interleaved. Read = open /
   Variable.get, write = advance (staging at the API server) / Variable.set, commit = the listener's
   commit after success (from the task log). Medians and p90 over ``--runs`` runs of each.
2. Handoff: two runs opened together, the holder keeps the name ``--hold`` seconds: the second's wait,
   and the gap between the holder's commit and the second's read (the price of polling).
3. CDC throughput: ``PostgresSlotSource`` on a private PostgreSQL cluster (``wal_level=logical``): changes/s
   peeked, parsed, applied once by LSN into a target database and acknowledged (no Airflow in the loop).

    python benchmarks/bench_watermark.py [--database auto|postgres|sqlite] [--runs 20] [--changes 20000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from marks import read  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def airflow_part(args) -> dict:
    from airflow_resilience.testing import AirflowEnvironment

    out: dict = {}
    with AirflowEnvironment.create(dags=[HERE / "dags" / "bench_watermark_dags.py"], database=args.database) as af:
        out["database"] = af.database_kind
        marks = Path(tempfile.mkdtemp(prefix="bench-wm-")) / "marks.jsonl"
        var, wm = f"bench_var_{int(time.time())}", f"bench.wm.{int(time.time())}"
        commit_ms = []
        for i in range(args.runs):
            for mode, name in (("variable", var), ("watermark", wm)):
                run = af.trigger("bench_watermark", conf={"mode": mode, "name": name, "marks": str(marks)})
                assert af.wait_for_run("bench_watermark", run, timeout=120) == "success"
                if mode == "watermark":
                    log = af.task_log("bench_watermark", run, "load", 1)
                    found = re.search(r"committed 1 watermark\(s\) in ([0-9.]+) ms", log)
                    if found:
                        commit_ms.append(float(found.group(1)))
        events = read(marks)
        for mode in ("variable", "watermark"):
            rows = [e for e in events if e["mode"] == mode]
            out[mode] = {
                "runs": len(rows),
                "read_ms_median": statistics.median(e["read_ms"] for e in rows),
                "read_ms_p90": pct([e["read_ms"] for e in rows], 0.9),
                "write_ms_median": statistics.median(e["write_ms"] for e in rows),
                "write_ms_p90": pct([e["write_ms"] for e in rows], 0.9),
            }
        out["watermark"]["commit_ms_median"] = statistics.median(commit_ms) if commit_ms else None
        out["watermark"]["commit_ms_p90"] = pct(commit_ms, 0.9) if commit_ms else None
        out["watermark"]["commits_timed"] = len(commit_ms)

        # handoff between two concurrent holders
        waits, gaps, holds = [], [], []
        rng = random.Random(5)
        for i in range(args.pairs):
            name = f"bench.handoff.{i}.{int(time.time())}"
            pair_marks = Path(tempfile.mkdtemp(prefix="bench-wm-pair-")) / "marks.jsonl"
            hold = args.hold + rng.uniform(0, args.poll)  # not a multiple of the poll interval
            holds.append(hold)
            conf = {"mode": "watermark", "name": name, "marks": str(pair_marks), "hold": hold, "poll": args.poll}
            runs = [af.trigger("bench_watermark", conf=conf) for _ in range(2)]
            for run in runs:
                assert af.wait_for_run("bench_watermark", run, timeout=180) == "success"
            reads = sorted((e for e in read(pair_marks) if e["mode"] == "watermark-read"), key=lambda e: e["value"])
            first, second = reads
            history = json.loads(
                af.airflow("resilience", "watermark", "get", name, "--history", "5").stdout
            )["history"]
            first_commit = min(h["at"] for h in history if h["action"] == "commit")
            waits.append(second["waited"] - hold)
            gaps.append(second["at"] - first_commit)
        out["handoff"] = {
            "pairs": args.pairs,
            "poll_s": args.poll,
            "hold_s_median": statistics.median(holds),
            "second_waited_beyond_hold_s_median": statistics.median(waits),
            "commit_to_second_read_s_median": statistics.median(gaps),
            "commit_to_second_read_s_max": max(gaps),
        }
    return out


def cdc_part(args) -> dict:
    from airflow_resilience.providers.postgres import PostgresSlotSource
    from airflow_resilience.testing.pgcluster import PostgresUnavailable, PrivatePostgres
    from airflow_resilience.watermark import MemoryWatermarks

    spec = importlib.util.spec_from_file_location("cdc_example", HERE.parent / "examples" / "dags" / "cdc_postgres.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        pg = PrivatePostgres(settings={"wal_level": "logical", "max_replication_slots": "4"}).start()
    except PostgresUnavailable as exc:
        return {"skipped": str(exc)}
    try:
        pg.create_database("src")
        pg.create_database("tgt")
        src = pg.connect("src", autocommit=False)
        cur = src.cursor()
        cur.execute("CREATE TABLE items (id integer PRIMARY KEY, name text, qty integer)")
        src.commit()
        cur.execute("SELECT pg_create_logical_replication_slot('bench', 'test_decoding')")
        src.commit()
        per_txn = 10
        for start in range(0, args.changes, per_txn):
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s)", [(i, f"item {i}", i % 100) for i in range(start, start + per_txn)]
            )
            src.commit()
        src.close()
        tgt = pg.connect("tgt", autocommit=False)
        with tgt.cursor() as c:
            c.execute(example.TARGET_DDL)
        tgt.commit()
        store = MemoryWatermarks()
        batches, applied, peek_s = 0, 0, 0.0
        t0 = time.perf_counter()
        while True:
            attempt = store.attempt(f"ti-{batches}")
            ends: list = []
            with PostgresSlotSource(
                "bench", postgres_conn_id="bench", max_changes=args.batch, connect=lambda: pg.connect("src"),
                watermark_backend=attempt, on_task_end=ends.append,
            ) as cdc:
                p0 = time.perf_counter()
                txns = cdc.transactions()
                peek_s += time.perf_counter() - p0
                for txn in txns:
                    if example.apply_once(tgt, "bench", txn):
                        applied += len(txn.changes)
                cdc.acknowledge()
            for end in ends:
                end(True)
            attempt.succeed()
            batches += 1
            if not txns:
                break
        elapsed = time.perf_counter() - t0
        tgt.close()
        return {
            "changes": args.changes,
            "applied": applied,
            "batches": batches,
            "batch_changes": args.batch,
            "seconds": elapsed,
            "changes_per_s": applied / elapsed,
            "peek_parse_changes_per_s": applied / peek_s,
        }
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="auto")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--skip-airflow", action="store_true")
    args = parser.parse_args()
    result = {"cdc": cdc_part(args)}
    if not args.skip_airflow:
        result.update(airflow_part(args))
    print(json.dumps(result, indent=2))
    if "variable" in result:
        v, w = result["variable"], result["watermark"]
        print(f"\nper run ({result['database']}, medians over {v['runs']} runs each):")
        print(f"  read   Variable.get {v['read_ms_median']:7.1f} ms   Watermark open   {w['read_ms_median']:7.1f} ms")
        print(f"  write  Variable.set {v['write_ms_median']:7.1f} ms   advance (stage)  {w['write_ms_median']:7.1f} ms")
        if w["commit_ms_median"] is not None:
            print(f"  commit at success (listener)           {w['commit_ms_median']:7.1f} ms")
        h = result["handoff"]
        print(f"handoff: the second waited {h['second_waited_beyond_hold_s_median']:.2f} s beyond the holder's "
              f"{h['hold_s_median']:.2f} s in its block (task end + commit + polling at {h['poll_s']} s); "
              f"commit -> second read {h['commit_to_second_read_s_median']:.2f} s median, {h['commit_to_second_read_s_max']:.2f} s max")
    c = result["cdc"]
    if "skipped" not in c:
        print(f"CDC: {c['applied']} changes in {c['seconds']:.1f} s = {c['changes_per_s']:.0f} changes/s applied once and "
              f"acknowledged; peek+parse alone {c['peek_parse_changes_per_s']:.0f} changes/s")


if __name__ == "__main__":
    main()
