"""``airflow resilience db …`` and ``airflow resilience uninstall``: the package's tables and rows in
Airflow's metadata database (docs/upgrade.md).

* ``db status`` — read only: our tables' revision against this package's head.
* ``db migrate`` / ``db downgrade --to-revision REV`` — what ``airflow db migrate`` does for our tables, and
  the rollback that ``airflow db downgrade`` does not do for an external DB manager.
* ``db clean --before DATE`` — retention: watermark history older than the date, and names that hold no
  value (reset, never committed) and were last changed before it. A current value is never deleted.
* ``uninstall`` — drops our tables (the version tables included) and deletes the task-state-store rows whose
  key is one this package writes; nothing of Airflow's own, nothing a DAG author wrote.

The decisions (which keys are ours, which rows a clean deletes) are pure functions below; the commands
read, ask and apply.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# ------------------------------------------------------------------------------------------ pure parts


def our_state_keys() -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact keys, key prefixes) of the task-state-store rows this package writes, from the modules that
    write them (a compatibility contract: see each constant)."""
    from airflow_resilience.airflow.accounting import ATTEMPT_KEY, EVIDENCE_KEY
    from airflow_resilience.airflow.kubernetes import K8S_KEY
    from airflow_resilience.attempt import HEAD_KEY, doc_key
    from airflow_resilience.ledger import LEDGER_KEY
    from airflow_resilience.resumable import RESUME_KEY, SUBMIT_PREFIX
    from airflow_resilience.watermark import AUTH_KEY

    doc_prefix = doc_key(0).removesuffix("0")
    return (
        frozenset({HEAD_KEY, LEDGER_KEY, ATTEMPT_KEY, EVIDENCE_KEY, K8S_KEY, RESUME_KEY, AUTH_KEY}),
        (doc_prefix, SUBMIT_PREFIX),
    )


def is_our_key(key: str, keys: frozenset[str], prefixes: Iterable[str]) -> bool:
    """True for a key this package writes: one of ``keys``, or a prefix followed by something."""
    return key in keys or any(key.startswith(p) and len(key) > len(p) for p in prefixes)


def parse_before(text: str) -> datetime:
    """``--before``: an ISO date (``2026-01-31``, midnight UTC) or date and time (naive means UTC)."""
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ValueError(
            f"--before {text!r} is not a date: give an ISO date such as 2026-01-31 or a date and time such as "
            "2026-01-31T12:00:00+00:00 (without a zone: UTC)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class NameRow:
    """What a clean needs to know of one watermark record."""

    name: str
    rev: int
    committed: bool
    held: bool
    staged: bool
    #: Seconds since the epoch of its last known change (history, hold, commit); ``None``: unknown.
    last_change: float | None


def forgotten(row: NameRow, cutoff: float) -> bool:
    """A name a clean may delete: no current value, not held, nothing staged, last changed before the cutoff.
    A name whose age is unknown is kept."""
    return (not row.committed and not row.held and not row.staged
            and row.last_change is not None and row.last_change < cutoff)


# ------------------------------------------------------------------------------------------- the edge
def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _confirm(args: Any, question: str) -> bool:
    if getattr(args, "yes", False):
        return True
    return input(f"{question} [y/N] ").strip().lower() == "y"


def _engine():
    from airflow_resilience.airflow.watermark_db import airflow_engine

    return airflow_engine()


def _audit(event: str, extra: dict[str, Any]) -> None:
    """Record the command in Airflow's audit log (``log`` table), as the watermark commands do."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Log(event=f"cli_resilience_{event}", owner=getpass.getuser(), extra=json.dumps(extra)))


def _manager(session):
    from airflow_resilience.airflow.db_manager import ResilienceDBManager

    return ResilienceDBManager(session)


def _migration_lock(session):
    """Airflow's own migration lock (``airflow db migrate`` holds it too)."""
    from airflow.utils.db import DBLocks, create_global_lock

    return create_global_lock(session=session, lock=DBLocks.MIGRATIONS)


def db_status(args) -> None:
    from sqlalchemy import inspect

    from airflow_resilience.airflow.watermark_db import ALL_TABLES, schema_status

    engine = _engine()
    status = schema_status(engine)
    present = sorted(set(inspect(engine).get_table_names()) & set(ALL_TABLES))
    answer = {"state": status.state.value, "revision": status.revision, "head": status.head,
              "usable": status.usable, "tables": present, "message": status.message}
    if getattr(args, "output", "plain") == "json":
        print(json.dumps(answer, indent=2))
    else:
        for key, value in answer.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


def db_migrate(args) -> None:
    from airflow.utils.session import create_session

    with create_session() as session, _migration_lock(session):
        _manager(session).upgradedb()
    db_status(args)


def db_downgrade(args) -> None:
    from airflow.utils.session import create_session

    if not args.show_sql_only and not _confirm(
        args, f"Take the airflow-resilience tables back to revision {args.to_revision!r} (back up the database first)?"
    ):
        print("nothing changed")
        return
    with create_session() as session, _migration_lock(session):
        _manager(session).downgrade(to_revision=args.to_revision, show_sql_only=args.show_sql_only)
    if not args.show_sql_only:
        _audit("db_downgrade", {"to_revision": args.to_revision})
        db_status(args)


def db_clean(args) -> None:
    from sqlalchemy import and_, delete, func, select

    from airflow_resilience.airflow.watermark_db import WatermarkSchemaError, history, schema_status, watermarks

    try:
        before = parse_before(args.before)
    except ValueError as exc:
        _fail(str(exc))
    cutoff = before.timestamp()
    engine = _engine()
    status = schema_status(engine)
    if not status.usable:
        _fail(str(WatermarkSchemaError(status.message)))
    with engine.connect() as conn:
        old_history = conn.execute(select(func.count()).select_from(history).where(history.c.at < cutoff)).scalar()
        last = dict(conn.execute(select(history.c.name, func.max(history.c.at)).group_by(history.c.name)).all())
        rows = [
            NameRow(
                name=r.name, rev=r.rev, committed=bool(r.committed), held=r.holder is not None, staged=bool(r.has_staged),
                last_change=max((t for t in (last.get(r.name), r.held_since, r.committed_at) if t is not None), default=None),
            )
            for r in conn.execute(select(watermarks)).all()
        ]
    names = [row for row in rows if forgotten(row, cutoff)]
    plan = (f"{old_history} watermark history rows before {before.isoformat()}, and {len(names)} names without a "
            f"value last changed before it{': ' + ', '.join(r.name for r in names) if names else ''}")
    if args.dry_run:
        print(f"would delete {plan}")
        return
    if not (old_history or names):
        print(f"nothing to delete before {before.isoformat()}")
        return
    if not _confirm(args, f"Delete {plan}?"):
        print("nothing changed")
        return
    deleted_names = []
    with engine.begin() as conn:
        done = conn.execute(delete(history).where(history.c.at < cutoff)).rowcount
        for row in names:
            # only if it is still what was read: a concurrent acquire or set keeps it
            gone = conn.execute(delete(watermarks).where(and_(
                watermarks.c.name == row.name, watermarks.c.rev == row.rev, watermarks.c.committed == False,  # noqa: E712
                watermarks.c.holder.is_(None), watermarks.c.has_staged == False,  # noqa: E712
            ))).rowcount
            if gone:
                deleted_names.append(row.name)
                done += conn.execute(delete(history).where(history.c.name == row.name)).rowcount
    _audit("db_clean", {"before": before.isoformat(), "history_rows": done, "names": deleted_names})
    print(f"deleted {done} watermark history rows and {len(deleted_names)} names without a value "
          f"(before {before.isoformat()}); no current value was touched")


def uninstall(args) -> None:
    from sqlalchemy import delete, func, inspect, or_, select

    from airflow.models.task_state_store import TaskStateStoreModel as TSS
    from airflow.utils.session import create_session

    from airflow_resilience.airflow.db_manager import drop_tables
    from airflow_resilience.airflow.watermark_db import ALL_TABLES

    keys, prefixes = our_state_keys()
    store = TSS.__table__
    ours = or_(store.c.key.in_(sorted(keys)), *(store.c.key.startswith(p, autoescape=True) for p in prefixes))
    engine = _engine()
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(store).where(ours)).scalar()
        tables = [t for t in ALL_TABLES if t in set(inspect(conn).get_table_names())]
    plan = (f"drop the tables {', '.join(tables) or '(none left)'} and delete {rows} task-state-store rows "
            "written by airflow-resilience (checkpoints, ledgers, attempt records, evidence, resume points, "
            "submit intents, watermark proofs)")
    if not _confirm(args, f"Uninstall airflow-resilience's data: {plan}? Watermark values are lost."):
        print("nothing changed")
        return
    with create_session() as session, _migration_lock(session), engine.begin() as conn:
        deleted = conn.execute(delete(store).where(ours)).rowcount
        dropped = drop_tables(conn)
    _audit("uninstall", {"dropped_tables": dropped, "state_store_rows": deleted})
    print(f"dropped {len(dropped)} tables ({', '.join(dropped) or 'none'}) and deleted {deleted} task-state-store "
          "rows of airflow-resilience. Now `pip uninstall airflow-resilience` on every Airflow component; what "
          "to change by hand is in docs/upgrade.md (uninstall)")


# ------------------------------------------------------------------------------------------ definitions
def migrate_command(help: str):
    """``migrate``: our tables to the head revision (also ``airflow resilience watermark migrate``)."""
    from airflow.cli.cli_config import ActionCommand, Arg, lazy_load_command

    return ActionCommand(
        name="migrate",
        help=help,
        func=lazy_load_command("airflow_resilience.airflow.cli_db.db_migrate"),
        args=(Arg(("-o", "--output"), choices=("plain", "json"), default="plain", help="Output format"),),
    )


def db_commands() -> tuple:
    """``airflow resilience db …`` and ``airflow resilience uninstall`` (registered by ``cli.py``)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    yes = Arg(("-y", "--yes"), action="store_true", default=False, help="Do not ask for confirmation")
    output = Arg(("-o", "--output"), choices=("plain", "json"), default="plain", help="Output format")

    def command(name: str, help: str, *args: Arg) -> ActionCommand:
        return ActionCommand(name=name, help=help, func=lazy_load_command(f"airflow_resilience.airflow.cli_db.{name}"),
                             args=args)

    db = GroupCommand(
        name="db",
        help="The airflow-resilience tables in the metadata database: status, migrate, downgrade, clean",
        subcommands=(
            ActionCommand(name="status", help="Read only: the tables' Alembic revision against this package's head",
                          func=lazy_load_command("airflow_resilience.airflow.cli_db.db_status"), args=(output,)),
            migrate_command("Create or upgrade the airflow-resilience tables (what `airflow db migrate` does for them)"),
            ActionCommand(
                name="downgrade",
                help="Take the airflow-resilience tables back to an Alembic revision (`airflow db downgrade` does not)",
                func=lazy_load_command("airflow_resilience.airflow.cli_db.db_downgrade"),
                args=(
                    Arg(("-r", "--to-revision"), required=True,
                        help="Revision to go back to ('base': no airflow-resilience table left); `db status` shows the current one"),
                    Arg(("-s", "--show-sql-only"), action="store_true", default=False,
                        help="Print the SQL instead of running it"),
                    yes, output,
                ),
            ),
            ActionCommand(
                name="clean",
                help="Delete watermark history older than a date (and names without a value last changed before it); "
                     "current values are kept",
                func=lazy_load_command("airflow_resilience.airflow.cli_db.db_clean"),
                args=(
                    Arg(("--before",), required=True, metavar="DATE",
                        help="ISO date or date and time, e.g. 2026-01-31 or 2026-01-31T12:00:00+00:00 (no zone: UTC)"),
                    Arg(("--dry-run",), action="store_true", default=False, help="Only count what would be deleted"),
                    yes,
                ),
            ),
        ),
    )
    uninstall = command(
        "uninstall",
        "Drop the airflow-resilience tables and delete the task-state-store rows it wrote (before pip uninstall)",
        yes,
    )
    return db, uninstall
