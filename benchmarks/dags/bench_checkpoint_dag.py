"""DAG run by ``benchmarks/bench_checkpoint.py``: measures checkpoint costs inside one real task.

Everything is measured inside a single running task instance, so raw state-store writes and
``Checkpoint`` writes go through the same supervisor -> execution API -> metadata database path.
The run conf carries the parameters and the path where the raw measurements are written as JSON:

    {"out": "/path/raw.json", "writes": 300, "blocks": 5, "warmup": 20,
     "repeats": 3, "items": 1000, "work_s": 0.01, "batched_interval": 1.0,
     "slow_repeats": 5, "slow_items": 10, "slow_work_s": 1.0}

Part 1 writes synchronously (``write_behind=False``: the cost of one write); parts 2 and 3 run every
checkpointed loop with write-behind off and on (the property ``Checkpoint.write_behind``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime

from airflow.sdk import dag, task


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


@dag(
    dag_id="bench_checkpoint",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["benchmark"],
)
def bench_checkpoint():
    @task(retries=0)
    def measure(**context):
        from airflow_resilience.checkpoint import Checkpoint

        conf = dict(context["dag_run"].conf or {})
        out = conf["out"]
        writes = int(conf.get("writes", 300))
        blocks = int(conf.get("blocks", 5))
        warmup = int(conf.get("warmup", 20))
        repeats = int(conf.get("repeats", 3))
        items = int(conf.get("items", 1000))
        work_s = float(conf.get("work_s", 0.01))
        batched_interval = float(conf.get("batched_interval", 1.0))
        slow_repeats = int(conf.get("slow_repeats", 5))
        slow_items = int(conf.get("slow_items", 10))
        slow_work_s = float(conf.get("slow_work_s", 1.0))

        raw_store = context["task_state_store"]
        ckpt = Checkpoint.current(flush_interval=0, write_behind=False)
        t_task = time.perf_counter()
        result: dict = {
            "python": platform.python_version(),
            "pid": os.getpid(),
            "try_number": int(context["ti"].try_number),
            "params": {
                "writes": writes,
                "blocks": blocks,
                "warmup": warmup,
                "repeats": repeats,
                "items": items,
                "work_s": work_s,
                "batched_interval": batched_interval,
                "slow_repeats": slow_repeats,
                "slow_items": slow_items,
                "slow_work_s": slow_work_s,
            },
        }

        # ------------------------------------------------------------ 1. per-write cost
        raw_key, our_key = "bench:raw", "bench"
        counter = 0

        def raw_call() -> int:
            nonlocal counter
            counter += 1
            value = {"counter": counter, "tag": "bench"}
            t0 = time.perf_counter_ns()
            raw_store.set(raw_key, value)
            return time.perf_counter_ns() - t0

        def our_call() -> int:
            nonlocal counter
            counter += 1
            value = {"counter": counter, "tag": "bench"}
            t0 = time.perf_counter_ns()
            ckpt.set(our_key, value)
            return time.perf_counter_ns() - t0

        calls = {"raw": raw_call, "ours": our_call}
        # Warm-up (also writes the checkpoint head once, so it is not in the measured samples).
        load_before = os.getloadavg()[0]
        for _ in range(warmup):
            raw_call()
            our_call()
        writes_before = ckpt.writes
        samples: dict[str, list[int]] = {"raw": [], "ours": []}
        block_log = []
        per_block = max(1, writes // blocks)
        for b in range(blocks):
            order = ("raw", "ours") if b % 2 == 0 else ("ours", "raw")
            for kind in order:
                n = per_block if b < blocks - 1 else writes - per_block * (blocks - 1)
                chunk = [calls[kind]() for _ in range(n)]
                samples[kind].extend(chunk)
                block_log.append(
                    {"block": b, "kind": kind, "n": n, "sum_ns": sum(chunk), "load1": os.getloadavg()[0]}
                )
        result["writes"] = {
            "raw_ns": samples["raw"],
            "ours_ns": samples["ours"],
            "blocks": block_log,
            "ours_store_writes": ckpt.writes - writes_before,
            "last_counter": counter,
            "load1_before": load_before,
            "load1_after": os.getloadavg()[0],
            "ours_document_bytes": len(json.dumps(ckpt._document())),
            "raw_value_bytes": len(json.dumps({"counter": counter, "tag": "bench"})),
        }

        # ------------------------------------------------------------ 2. loop slowdown
        def timed(loop, n: int) -> list[int]:
            """Run ``loop`` (an iterator of ``n`` items) with ``work_s`` per item; per-item times in ns
            (from one item's start to the next's: the loop's own work at the boundary included)."""
            times = []
            last = time.perf_counter_ns()
            for _item in loop:
                now = time.perf_counter_ns()
                times.append(now - last)
                last = now
                time.sleep(work)
            times.append(time.perf_counter_ns() - last)
            return times[1:]

        def loop_variant(interval: float | None, write_behind: bool):
            def run(r: int, name: str) -> tuple[int, list[int]]:
                if interval is None:
                    return 0, timed(iter(range(n_items)), n_items)
                ckpt.write_behind = write_behind
                before = ckpt.writes
                times = timed(ckpt.iterate(range(n_items), key=f"bench-{name}-r{r}", flush_interval=interval), n_items)
                return ckpt.writes - before, times
            return run

        def run_loops(variants: dict, reps: int) -> list[dict]:
            names = list(variants)
            rows = []
            for r in range(reps):
                k = r % len(names)
                for name in names[k:] + names[:k]:  # rotate so no variant always runs first
                    t0 = time.perf_counter_ns()
                    store_writes, item_ns = variants[name](r, name)
                    wall = time.perf_counter_ns() - t0
                    rows.append({"repeat": r, "variant": name, "wall_ns": wall, "store_writes": store_writes,
                                 "item_ns": item_ns, "load1": os.getloadavg()[0]})
            return rows

        work, n_items = work_s, items
        result["loops"] = run_loops({
            "plain": loop_variant(None, False),
            "batched": loop_variant(batched_interval, False),
            "batched_wb": loop_variant(batched_interval, True),
            "every_item": loop_variant(0.0, False),
            "every_item_wb": loop_variant(0.0, True),
        }, repeats)

        # ------------------------------------------------------------ 3. one write per second, 1 s items
        work, n_items = slow_work_s, slow_items
        result["slow_loops"] = run_loops({
            "plain": loop_variant(None, False),
            "sync": loop_variant(0.0, False),
            "write_behind": loop_variant(0.0, True),
        }, slow_repeats)
        result["final_document_bytes"] = len(json.dumps(ckpt._document()))
        result["task_seconds"] = time.perf_counter() - t_task
        _write_json(out, result)

    measure()


bench_checkpoint()
