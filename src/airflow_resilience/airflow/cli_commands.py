"""Bodies of the ``airflow resilience`` commands (run in the CLI process, with the metadata DB).

Listings print through Airflow's console helpers (``-o table|json|yaml|plain``, as ``airflow dags list``);
documents (``checkpoint show``, ``watermark get``) print JSON by default, YAML with ``-o yaml``. Checkpoints
are read and deleted through the configured ``[state_store] backend`` (``airflow.state.get_state_backend``),
the same backend the execution API writes them through, so a custom backend works as the default one does.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from airflow.models.log import Log
from airflow.utils.session import create_session

from airflow_resilience.attempt import HEAD_KEY, doc_key


def _console():
    from airflow.cli.simple_table import AirflowConsole

    return AirflowConsole()


def _print_document(doc: Any, output: str) -> None:
    """A JSON document as JSON (indented, sorted keys: stable for scripts) or YAML (Airflow's console)."""
    if output == "yaml":
        _console().print_as_yaml(doc)
    else:
        print(json.dumps(doc, indent=2, sort_keys=True))


def _print_listing(records: list[dict], rows: list[dict], output: str) -> None:
    """``records`` as JSON/YAML (typed values), ``rows`` (flat, display strings) as a table or plain text."""
    console = _console()
    if output == "json":
        console.print_as_json(records)
    elif output == "yaml":
        console.print_as_yaml(records)
    else:
        console.print_as(rows, output=output)


# ------------------------------------------------------------------------------------------ checkpoints
def _task_scope(args):
    from airflow.state import TaskScope

    return TaskScope(dag_id=args.dag_id, run_id=args.run_id, task_id=args.task_id, map_index=args.map_index)


def _checkpoint_keys(backend, scope, session) -> list[str]:
    """The keys a checkpoint of the task instance can have: the head, the document it names and one document
    per try so far (``resilience:checkpoint:try-N``). A state backend has no "list keys" call, so the keys are
    derived from the task instance's ``try_number`` (and from the head when the task instance is gone)."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI

    tries = session.scalar(
        select(TI.try_number).where(
            TI.dag_id == scope.dag_id, TI.run_id == scope.run_id, TI.task_id == scope.task_id,
            TI.map_index == scope.map_index,
        )
    ) or 0
    keys = [HEAD_KEY, *(doc_key(n) for n in range(1, int(tries) + 1))]
    try:
        named = json.loads(backend.get(scope, HEAD_KEY, session=session) or "null")
        named = named.get("try_number") if isinstance(named, dict) else None
    except ValueError:
        named = None  # a damaged head: shown raw below
    if isinstance(named, int) and not isinstance(named, bool) and doc_key(named) not in keys:
        keys.append(doc_key(named))
    return keys


def _saved_checkpoint(backend, scope, session) -> dict[str, str]:
    """Key -> stored JSON text of the checkpoint rows that exist."""
    found = {}
    for key in _checkpoint_keys(backend, scope, session):
        raw = backend.get(scope, key, session=session)
        if raw is not None:
            found[key] = raw
    return found


def checkpoint_show(args) -> None:
    from airflow.state import get_state_backend

    with create_session() as session:
        rows = _saved_checkpoint(get_state_backend(), _task_scope(args), session)
    out = {}
    for key, raw in rows.items():
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = {"undecodable_raw_text": raw}
    if not out:
        print(f"no checkpoint for {args.dag_id}/{args.run_id}/{args.task_id}[{args.map_index}]", file=sys.stderr)
        sys.exit(1)
    _print_document(out, args.output)


def checkpoint_reset(args) -> None:
    from airflow.state import get_state_backend

    where = f"{args.dag_id}/{args.run_id}/{args.task_id}[{args.map_index}]"
    if not args.yes and input(f"Delete the checkpoint of {where}? [y/N] ").strip().lower() != "y":
        print("nothing deleted")
        return
    backend, scope = get_state_backend(), _task_scope(args)
    with create_session() as session:
        keys = list(_saved_checkpoint(backend, scope, session))
        for key in keys:  # the documents first, the head that names one last
            if key != HEAD_KEY:
                backend.delete(scope, key, session=session)
        if HEAD_KEY in keys:
            backend.delete(scope, HEAD_KEY, session=session)
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


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "-"
    return f"{holder['dag_id']}/{holder['run_id']}/{holder['task_id']} try {holder['try_number']}"


def watermark_list(args) -> None:
    wms = _watermarks()
    records = [_describe(wms.read(name)) for name in wms.names()]
    rows = [
        {"name": r["name"], "version": r["version"], "value": json.dumps(r["value"]), "holder": _holder_text(r["holder"])}
        for r in records
    ]
    _print_listing(records, rows, args.output)


def watermark_get(args) -> None:
    rec = _run(lambda: _watermarks().read(args.name))
    out = _describe(rec)
    if args.history:
        out["history"] = _watermarks().history(args.name, limit=args.history)
    _print_document(out, args.output)


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
    from airflow_resilience.airflow.report_db import failed_attempts
    from airflow_resilience.report import summarize, window_bounds

    try:
        start, end = window_bounds(args.since)
    except ValueError as exc:
        _fail(f"--since: {exc}")
    with create_session() as session:
        attempts = failed_attempts(session, start, dag_id=args.dag_id)
    summary = summarize(attempts, since=start, until=end, window=args.since, dag_id=args.dag_id)
    console = _console()
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
