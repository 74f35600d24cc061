"""Command line of the drills: ``airflow resilience drill`` and ``python -m airflow_resilience.drills``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from airflow_resilience.drills.model import DISRUPTIONS, SIDES, DrillResult

DEFAULT_OUT = Path("reports/drill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="eviction,lost_worker,oom",
                        help=f"comma-separated disruptions, each one scenario ({', '.join(DISRUPTIONS)})")
    parser.add_argument("--workload", default="load", choices=["load", "job"],
                        help="load: a 'items x seconds' loop; job: a Databricks run on the loopback Jobs API server")
    parser.add_argument("--dag-file", type=Path, default=None,
                        help="drill your own DAG: the file to deploy (with --dag-id and --task-id)")
    parser.add_argument("--dag-id", default=None, help="your DAG's id (with --dag-file)")
    parser.add_argument("--task-id", default=None, help="the task of your DAG to disrupt (with --dag-file)")
    parser.add_argument("--at-seconds", type=float, default=10.0,
                        help="your DAG: disrupt this many seconds into the task's attempt")
    parser.add_argument("--conf", default=None, help="your DAG: the run conf, as JSON")
    parser.add_argument("--repeats", type=int, default=1, help="runs per scenario and side (medians over them)")
    parser.add_argument("--items", type=int, default=30, help="items of the drill task")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of work per item")
    parser.add_argument("--job-duration", type=float, default=20.0, help="seconds a job runs (job workload)")
    parser.add_argument("--at", type=float, default=1 / 3, help="disrupt after this fraction of the work")
    parser.add_argument("--grace", type=float, default=10.0, help="eviction: seconds from SIGTERM to SIGKILL")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help=f"comma-separated sides, side by side ({', '.join(SIDES)}; default all three)")
    parser.add_argument("--retries", type=int, default=0, metavar="N",
                        help="the drill task's retries on every side (0..3, default 0: a side that needs a retry "
                             "to survive a disruption fails, and the report shows it)")
    parser.add_argument("--stock-retries", type=int, default=None, metavar="N",
                        help="retries of both stock sides (stock, stock-checkpointed), overriding --retries for them")
    parser.add_argument("--database", default="auto", choices=["auto", "postgres", "sqlite"])
    parser.add_argument("--heartbeat-timeout", type=int, default=None,
                        help="the scheduler's task_instance_heartbeat_timeout, seconds, for both sides (stock: 300); the report says so")
    parser.add_argument("--concurrency", type=int, default=3, help="runs at a time per side")
    parser.add_argument("--chaos", type=int, default=0, metavar="N",
                        help="chaos mode: N random disruptions across many runs (package on), invariants checked")
    parser.add_argument("--seed", type=int, default=0, help="chaos mode: random seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for results.json and report.html")
    parser.add_argument("--from", dest="from_file", type=Path, default=None,
                        help="rebuild the summary and the report from a saved results.json, without running")


def missing_extras(args: argparse.Namespace) -> str | None:
    """What to install before this drill can run, or None: the ``drills`` extra (embedded Airflows through
    the test harness, the report's plots, the progress bar) and, for ``--workload job``, ``databricks``."""
    from airflow_resilience.extras import MissingExtraError, require

    try:
        require("drills", "airflow resilience drill")
    except MissingExtraError as exc:
        return str(exc)
    if args.from_file is None and not args.dag_file and args.workload == "job" and not _has_databricks():
        return ("airflow resilience drill --workload job runs the Databricks operators and needs the "
                "'databricks' extra (apache-airflow-providers-databricks): pip install "
                "'airflow-resilience[drills,databricks]'")
    return None


def run(args: argparse.Namespace) -> int:
    problem = missing_extras(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from airflow_resilience.drills.report import terminal_summary, write_report

    if args.from_file is not None:
        try:
            result = DrillResult.load(args.from_file)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        result = _run(args)
    results, report = write_report(result, args.out)
    print()
    print(terminal_summary(result))
    print(f"\nresults: {results}\nreport:  {report}")
    failed = any(r.violations for r in result.runs) or bool(result.meta.get("failed_runs"))
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> DrillResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from airflow_resilience.drills.runner import DrillConfig, Scenario, chaos, run_drill

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    database = None if args.database == "auto" else args.database
    import json

    try:
        conf = json.loads(args.conf) if args.conf else None
    except ValueError as exc:
        raise SystemExit(f"error: --conf is not JSON: {exc}") from None
    cfg = DrillConfig(items=args.items, seconds=args.seconds, job_duration=args.job_duration, grace=args.grace,
                      dag_file=args.dag_file, dag_id=args.dag_id, task_id=args.task_id, conf=conf,
                      at_seconds=args.at_seconds, retries=side_retries(args))
    try:
        cfg.check()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    workload = "dag" if args.dag_file else args.workload
    sides = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    bad = [s for s in sides if s not in SIDES]
    if bad:
        raise SystemExit(f"error: --sides takes {', '.join(SIDES)} (comma-separated), got {bad}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        if args.chaos:
            bar = progress.add_task("chaos: booting Airflow", total=None)

            def on_progress(label, record):
                if record is not None:
                    progress.update(bar, advance=sum(1 for d in record.disruptions if not d.get("overlap")), total=args.chaos,
                                    description=f"chaos: {label} -> {record.final_state}"
                                    + (" INVARIANT FAILED" if record.violations else ""))

            return chaos(args.chaos, seed=args.seed, config=cfg, database=database,
                         concurrency=args.concurrency, on_progress=on_progress,
                         workloads=("load", "job") if _has_databricks() else ("load",))
        scenarios = [Scenario(k.strip(), at=args.at, workload=workload) for k in args.scenario.split(",") if k.strip()]
        total = len(scenarios) * len(sides) * args.repeats
        bar = progress.add_task("booting Airflow", total=total)

        def on_progress(label, record):
            if record is None:
                progress.update(bar, description=label)
            else:
                progress.update(bar, advance=1, description=f"{label}: {record.final_state}")

        return run_drill(scenarios, sides=sides, repeats=args.repeats, config=cfg, database=database,
                         heartbeat_timeout=args.heartbeat_timeout, concurrency=args.concurrency,
                         on_progress=on_progress)


def side_retries(args: argparse.Namespace) -> dict[str, int]:
    """Each side's ``retries``: ``--retries`` for all, ``--stock-retries`` for both stock sides."""
    stock = args.retries if args.stock_retries is None else args.stock_retries
    return {side: stock if side in ("stock", "stock-checkpointed") else args.retries for side in SIDES}


def _has_databricks() -> bool:
    import importlib.util

    return importlib.util.find_spec("airflow.providers.databricks") is not None


def drill_command(args) -> None:  # `airflow resilience drill`
    sys.exit(run(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_resilience.drills", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
