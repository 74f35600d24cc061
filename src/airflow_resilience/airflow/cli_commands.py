"""Bodies of the ``airflow resilience`` commands (run in the CLI process, with the metadata DB)."""

from __future__ import annotations

import getpass
import json
import sys

from sqlalchemy import delete, select

from airflow.models.log import Log
from airflow.models.task_state_store import TaskStateStoreModel
from airflow.utils.session import create_session

PREFIX = "resilience:checkpoint:"


def _checkpoint_rows(args):
    """The WHERE clause selecting the checkpoint keys of the task instance named on the command line."""
    return (
        TaskStateStoreModel.dag_id == args.dag_id,
        TaskStateStoreModel.run_id == args.run_id,
        TaskStateStoreModel.task_id == args.task_id,
        TaskStateStoreModel.map_index == args.map_index,
        TaskStateStoreModel.key.startswith(PREFIX),
    )


def _rows(session, args):
    return session.scalars(select(TaskStateStoreModel).where(*_checkpoint_rows(args))).all()


def checkpoint_show(args) -> None:
    with create_session() as session:
        rows = _rows(session, args)
        out = {}
        for row in rows:
            try:
                out[row.key] = json.loads(row.value)
            except ValueError:
                out[row.key] = {"undecodable_raw_text": row.value}
    if not out:
        print(f"no checkpoint for {args.dag_id}/{args.run_id}/{args.task_id}[{args.map_index}]", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(out, indent=2, sort_keys=True))


def checkpoint_reset(args) -> None:
    where = f"{args.dag_id}/{args.run_id}/{args.task_id}[{args.map_index}]"
    if not args.yes and input(f"Delete the checkpoint of {where}? [y/N] ").strip().lower() != "y":
        print("nothing deleted")
        return
    with create_session() as session:
        keys = [row.key for row in _rows(session, args)]
        session.execute(delete(TaskStateStoreModel).where(*_checkpoint_rows(args)))
        session.add(
            Log(
                event="cli_resilience_checkpoint_reset",
                dag_id=args.dag_id,
                run_id=args.run_id,
                task_id=args.task_id,
                map_index=args.map_index,
                owner=getpass.getuser(),
                extra=json.dumps({"deleted_keys": keys}),
            )
        )
    print(f"deleted {len(keys)} checkpoint keys of {where}")


# ------------------------------------------------------------------------------------------ watermarks
def _watermarks():
    from airflow_resilience.airflow.watermark_db import service

    return service()


def _audit(event: str, name: str, extra: dict) -> None:
    """Record an operator's watermark command in Airflow's audit log (the ``log`` table)."""
    with create_session() as session:
        session.add(Log(event=f"cli_resilience_watermark_{event}", owner=getpass.getuser(), extra=json.dumps({"name": name, **extra})))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _describe(rec) -> dict:
    return {
        "name": rec.name,
        "value": rec.value if rec.committed else None,
        "committed": rec.committed,
        "version": rec.version,
        "committed_at": rec.committed_at,
        "committed_by": rec.committed_by.to_json() if rec.committed_by else None,
        "holder": rec.holder.to_json() if rec.holder else None,
        "staged": rec.staged if rec.has_staged else None,
    }


def _run(fn):
    from airflow_resilience.errors import WatermarkError

    try:
        return fn()
    except WatermarkError as exc:
        _fail(str(exc))


def watermark_list(args) -> None:
    wms = _watermarks()
    rows = [_describe(wms.read(name)) for name in wms.names()]
    if args.output == "json":
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        print("no watermarks")
        return
    print(f"{'name':40} {'version':>7}  {'value':30} holder")
    for r in rows:
        holder = r["holder"]
        held = f"{holder['dag_id']}/{holder['run_id']}/{holder['task_id']} try {holder['try_number']}" if holder else "-"
        print(f"{r['name']:40} {r['version']:>7}  {json.dumps(r['value']):30} {held}")


def watermark_get(args) -> None:
    rec = _run(lambda: _watermarks().read(args.name))
    out = _describe(rec)
    if args.history:
        out["history"] = _watermarks().history(args.name, limit=args.history)
    print(json.dumps(out, indent=2, sort_keys=True))


def watermark_set(args) -> None:
    from airflow_resilience.errors import WatermarkError

    try:
        value = json.loads(args.value)
    except ValueError:
        _fail(
            f"VALUE {args.value!r} is not JSON: quote strings for the shell and JSON, e.g. "
            f"airflow resilience watermark set {args.name} '\"2024-01-01T00:00:00+00:00\"' (or a number: 42)"
        )
    from airflow_resilience.errors import UnknownWatermarkError

    try:
        before = _watermarks().read(args.name)
    except UnknownWatermarkError:
        before = None  # set creates it
    except WatermarkError as exc:
        _fail(str(exc))
    rec = _run(
        lambda: _watermarks().set(args.name, value, backwards=args.backwards, force=args.force, actor=getpass.getuser())
    )
    previous = before.value if before is not None and before.committed else None
    _audit("set", args.name, {"value": value, "previous": previous, "backwards": args.backwards, "force": args.force})
    print(f"watermark {args.name!r} set to {json.dumps(rec.value)} (version {rec.version}, was {json.dumps(previous)})")


def watermark_reset(args) -> None:
    if not args.yes and input(f"Forget the value of watermark {args.name!r}? [y/N] ").strip().lower() != "y":
        print("nothing changed")
        return
    before = _run(lambda: _watermarks().read(args.name))
    _run(lambda: _watermarks().reset(args.name, force=args.force, actor=getpass.getuser()))
    previous = before.value if before.committed else None
    _audit("reset", args.name, {"previous": previous, "force": args.force})
    print(f"watermark {args.name!r} reset (was {json.dumps(previous)}); the next run reads its default")


def watermark_migrate(args) -> None:
    from airflow_resilience.airflow.watermark_db import SCHEMA_VERSION

    _watermarks()
    print(f"watermark tables are at schema version {SCHEMA_VERSION}")


# ------------------------------------------------------------------------------------------------ report
def report_sections(summary: dict) -> list[tuple[str, list[dict]]]:
    """The report as titled tables (``table`` and ``plain`` output)."""
    from airflow_resilience.report import format_seconds

    t = summary["totals"]
    overview = [
        {"measure": "failed attempts", "value": t["failed_attempts"]},
        *({"measure": f"  {kind}", "value": t[kind]} for kind in ("infrastructure", "application", "timeout", "manual", "unknown")),
        {"measure": "infrastructure retries granted (retries kept)", "value": t["grants"]},
        {"measure": "stock retry rules", "value": t["stock"]},
        {"measure": "budget exhausted", "value": t["exhausted"]},
        {"measure": "circuit breakers opened", "value": t["breakers_opened"]},
        {"measure": "compute redone", "value": f"{format_seconds(t['redone_seconds'])} ({t['redone_seconds']:.0f} s)"},
        {"measure": "compute saved by checkpoints", "value": f"{format_seconds(t['saved_seconds'])} ({t['saved_seconds']:.0f} s)"},
    ]
    sections = [(f"airflow-resilience report: {summary['since']} .. {summary['until']}", overview)]
    if summary["by_reason"]:
        sections.append(("failed attempts by reason", summary["by_reason"]))
    if summary["by_verdict"]:
        sections.append(("verdicts", summary["by_verdict"]))
    for what in ("dags", "tasks", "pools", "hosts"):
        if summary["top"][what]:
            sections.append((f"most hit {what}", summary["top"][what]))
    return sections


def report(args) -> None:
    from airflow.cli.simple_table import AirflowConsole

    from airflow_resilience.airflow.report_db import failed_attempts
    from airflow_resilience.report import summarize, window_bounds

    try:
        start, end = window_bounds(args.since)
    except ValueError as exc:
        _fail(f"--since: {exc}")
    with create_session() as session:
        attempts = failed_attempts(session, start, dag_id=args.dag_id)
    summary = summarize(attempts, since=start, until=end, window=args.since, dag_id=args.dag_id)
    console = AirflowConsole()
    if args.output == "json":
        console.print_as_json(summary)
        return
    if args.output == "yaml":
        console.print_as_yaml(summary)
        return
    for title, rows in report_sections(summary):
        if args.output == "table":
            console.print(f"[bold]{title}[/bold]")
        else:
            print(f"# {title}")
        console.print_as(rows, output=args.output)
