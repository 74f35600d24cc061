"""Task state store rows of a task instance, read and written on the server side (scheduler, detector, gate).

Values are JSON text; our bookkeeping rows expire after ``[resilience] bookkeeping_retention_days``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any


def task_scope(ti: Any):
    from airflow_resilience.airflow.compat import TaskScope

    return TaskScope(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index)


def read_json(backend: Any, scope: Any, key: str, session: Any) -> Any:
    raw = backend.get(scope, key, session=session)
    return None if raw is None else json.loads(raw)


def write_json(backend: Any, scope: Any, key: str, value: Any, session: Any) -> None:
    from airflow_resilience.airflow.runtime import settings

    days = settings().bookkeeping_retention_days
    expires_at = datetime.now(timezone.utc) + timedelta(days=days) if days > 0 else None
    backend.set(scope, key, json.dumps(value), session=session, expires_at=expires_at)


def dag_tags(dag_id: str, session: Any) -> list[str]:
    from sqlalchemy import select

    from airflow.models.dag import DagTag

    return list(session.scalars(select(DagTag.name).where(DagTag.dag_id == dag_id)))


def applies(cfg: Any, dag_id: str, session: Any) -> bool:
    """``enabled``, and with ``selective_enable`` the DAG carries ``enable_tag`` (read from the DB)."""
    from airflow_resilience.config import applies_to

    if not cfg.enabled:
        return False
    return applies_to(cfg, dag_tags(dag_id, session) if cfg.selective_enable else ())
