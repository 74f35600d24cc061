"""The metadata database as the tests read it: task instances, their tries, state-store rows, logs, SQL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class TaskInstanceRow:
    """One task instance (or one archived try of it) as stored in the metadata database."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str | None
    max_tries: int
    pid: int | None
    hostname: str | None
    id: str
    start_date: datetime | None = None
    end_date: datetime | None = None
    retry_reason: str | None = None
    #: The executor's id of the workload (CeleryExecutor: the Celery task id).
    external_executor_id: str | None = None



class MetadataRecords:
    """Reads (and a few writes) of an environment's metadata database and logs (a mixin of AirflowEnvironment)."""

    # ------------------------------------------------------------------ task instances
    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskInstanceRow:
        rows = self.sql(
            "SELECT dag_id, run_id, task_id, map_index, try_number, state, max_tries, pid, hostname, id,"
            " start_date, end_date, retry_reason, external_executor_id FROM task_instance"
            " WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = :m",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        if not rows:
            raise LookupError(f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
        return _row(rows[0])

    def try_history(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[TaskInstanceRow]:
        """Every try of a task instance, oldest first: archived tries, then the current one."""
        rows = self.sql(
            "SELECT dag_id, run_id, task_id, map_index, try_number, state, max_tries, pid, hostname, task_instance_id,"
            " start_date, end_date, retry_reason, external_executor_id FROM task_instance_history"
            " WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = :m ORDER BY try_number",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        history = [_row(r) for r in rows]
        current = self.task_instance(dag_id, run_id, task_id, map_index)
        if not history or history[-1].try_number != current.try_number:
            history.append(current)
        return history

    def state_store(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The task state store rows of one task instance, decoded."""
        rows = self.sql(
            "SELECT key, value FROM task_state_store WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            " AND map_index = :m",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        return {k: json.loads(v) for k, v in rows}

    def write_state_store_raw(self, dag_id: str, run_id: str, task_id: str, key: str, raw: str) -> None:
        """Overwrite one state-store row with raw text (to simulate damaged saved state in tests)."""
        self.sql(
            "UPDATE task_state_store SET value = :v WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            " AND key = :k",
            v=raw,
            d=dag_id,
            r=run_id,
            t=task_id,
            k=key,
            write=True,
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            base = base / f"map_index={map_index}"
        path = base / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ SQL
    def sql(self, statement: str, write: bool = False, **params: Any) -> list[tuple]:
        from sqlalchemy import create_engine, text

        from sqlalchemy.exc import OperationalError

        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_pre_ping=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with self._engine.begin() as conn:
                    result = conn.execute(text(statement), params)
                    return [] if write or not result.returns_rows else [tuple(r) for r in result]
            except OperationalError:
                # the database server is restarting (a control-plane drill): a read is asked again
                if write or time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)


def _when(value: Any) -> datetime | None:
    """Timestamps come back as datetimes from PostgreSQL and as text from SQLite: make them UTC datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _row(r: tuple) -> TaskInstanceRow:
    return TaskInstanceRow(
        dag_id=r[0],
        run_id=r[1],
        task_id=r[2],
        map_index=r[3],
        try_number=r[4],
        state=r[5],
        max_tries=r[6],
        pid=r[7],
        hostname=r[8],
        id=str(r[9]),
        start_date=_when(r[10]),
        end_date=_when(r[11]),
        retry_reason=r[12],
        external_executor_id=r[13] if len(r) > 13 else None,
    )
