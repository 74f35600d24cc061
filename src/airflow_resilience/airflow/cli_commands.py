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
