"""The project's performance table and the chaos benchmark, both through the drills.

1. Three sides, medians over ``--repeats`` runs (default 5): ``stock`` (stock Airflow 3.3.2, a plain loop),
   ``stock-checkpointed`` (stock Airflow 3.3.2, a hand-written ``task_state_store`` checkpoint) and ``ours``
   (airflow-resilience, ``Checkpoint.iterate``); ratios against both stock sides. Eviction at 1/3 of a
   60 s task (SIGTERM, SIGKILL 10 s later), lost worker (SIGKILL of the supervisor), OOM-style kill (SIGKILL
   of the task runner). Ours has ``retries=0``; both stock sides ``--stock-retries`` (default 1: without a
   retry they fail at the first disruption; ``--stock-retries 0`` shows that). Stock heartbeat timeout
   (300 s) unless --heartbeat-timeout. Tries, retries spent and grants come from Airflow's records.
2. Chaos: ``--chaos`` random disruptions (default 50) with the package on, invariants checked after each run.

    python benchmarks/bench_drill.py [--repeats 5] [--stock-retries 1] [--chaos 50] [--database auto|postgres|sqlite]

Writes reports/bench_drill/{results.json,report.html} and reports/bench_chaos/{results.json,report.html}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from airflow_resilience.drills.cli import main as drill  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chaos", type=int, default=50)
    parser.add_argument("--database", default="auto", choices=["auto", "postgres", "sqlite"])
    parser.add_argument("--heartbeat-timeout", type=int, default=None)
    parser.add_argument("--stock-retries", type=int, default=1, help="retries of both stock sides (ours: 0)")
    parser.add_argument("--skip-table", action="store_true")
    args = parser.parse_args()
    rc = 0
    if not args.skip_table:
        table = ["--scenario", "eviction,lost_worker,oom", "--items", "60", "--seconds", "1", "--repeats",
                 str(args.repeats), "--concurrency", "3", "--database", args.database, "--out", "reports/bench_drill",
                 "--sides", "stock,stock-checkpointed,ours", "--retries", "0", "--stock-retries", str(args.stock_retries)]
        if args.heartbeat_timeout:
            table += ["--heartbeat-timeout", str(args.heartbeat_timeout)]
        rc |= drill(table)
    if args.chaos:
        rc |= drill(["--chaos", str(args.chaos), "--concurrency", "4", "--database", args.database,
                     "--out", "reports/bench_chaos"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
