"""Reads for the operator's view: one task instance's attempts, budgets, checkpoint and watermarks, and the
failed attempts of a window for the fleet report. Read only (no writes, no DDL): what the API server's UI
routes and ``airflow resilience report`` show. The numbers are computed in :mod:`airflow_resilience.report`.

Sources: Airflow's ``task_instance`` and ``task_instance_history`` (tries, times, host, pool), the task
state store (``resilience:ledger``, ``resilience:attempt``, the checkpoint head and document) and, when its
table exists, ``resilience_watermark``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from airflow_resilience.attempt import HEAD_KEY, doc_key
from airflow_resilience.ledger import LEDGER_KEY, AttemptRecord, Ledger
from airflow_resilience.report import FailedAttempt, budgets

log = logging.getLogger(__name__)

ATTEMPT_KEY = "resilience:attempt"
DOC_PREFIX = "resilience:checkpoint:try-"


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(value: Any) -> str | None:
    """``value`` (epoch seconds, datetime, ISO text) as ISO-8601 UTC; text that is no time as it is."""
    when = _utc(value)
    if when is not None:
        return when.isoformat()
    return None if value is None else str(value)


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _ledger(text: str | None) -> Ledger:
    """A damaged ledger reads as empty here (the view must still show Airflow's own tries)."""
    try:
        return Ledger.from_json(_json(text))
    except Exception:
        return Ledger()


def _tries(session: Session, dag_id: str, run_ids: Iterable[str], task_ids: Iterable[str] | None = None) -> list[Any]:
    """Every try of the given runs: archived (``task_instance_history``) and current (``task_instance``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    run_ids = sorted(set(run_ids))
    out = []
    for model in (TaskInstanceHistory, TaskInstance):
        query = select(
            model.dag_id, model.run_id, model.task_id, model.map_index, model.try_number, model.state,
            model.start_date, model.end_date, model.hostname, model.pool, model.max_tries,
        ).where(model.dag_id == dag_id, model.run_id.in_(run_ids))
        if task_ids is not None:
            query = query.where(model.task_id.in_(sorted(set(task_ids))))
        out.extend(session.execute(query).all())
    return out


def _checkpoint_attempts(doc: Any) -> dict[int, dict[str, Any]]:
    """The checkpoint document's per-attempt entries (``try_number``, ``plan``, ``from_try``, ``written_at``)."""
    out: dict[int, dict[str, Any]] = {}
    if isinstance(doc, dict) and isinstance(doc.get("attempts"), list):
        for entry in doc["attempts"]:
            if isinstance(entry, dict) and isinstance(entry.get("try_number"), int):
                out[entry["try_number"]] = entry
    return out


def _resumed_tries(entries: dict[int, dict[str, Any]]) -> set[int]:
    return {e["from_try"] for e in entries.values() if e.get("plan") == "resume" and isinstance(e.get("from_try"), int)}


# ----------------------------------------------------------------------------------------- one task instance
def task_view(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
    """What the Resilience tab shows; ``None`` when there is no such task instance."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.taskinstance import TaskInstance

    ti = session.execute(
        select(TaskInstance.state, TaskInstance.try_number, TaskInstance.max_tries, TaskInstance.id).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index,
        )
    ).first()
    if ti is None:
        return None
    state_rows = session.execute(
        select(TaskStateStoreModel.key, TaskStateStoreModel.value, TaskStateStoreModel.updated_at).where(
            TaskStateStoreModel.dag_id == dag_id,
            TaskStateStoreModel.run_id == run_id,
            TaskStateStoreModel.task_id == task_id,
            TaskStateStoreModel.map_index == map_index,
            TaskStateStoreModel.key.startswith("resilience:"),
        )
    ).all()
    state = {row.key: row for row in state_rows}
    ledger = _ledger(state[LEDGER_KEY].value if LEDGER_KEY in state else None)
    head = _json(state[HEAD_KEY].value) if HEAD_KEY in state else None
    doc_row = None
    if isinstance(head, dict) and isinstance(head.get("try_number"), int):
        doc_row = state.get(doc_key(head["try_number"]))
    doc = _json(doc_row.value) if doc_row is not None else None
    entries = _checkpoint_attempts(doc)

    by_try: dict[int, Any] = {}
    for row in _tries(session, dag_id, [run_id], [task_id]):
        if row.map_index == map_index and row.task_id == task_id:
            by_try[row.try_number] = row  # the current row (read last) wins over an archived one
    attempts = []
    for number in sorted(set(by_try) | {r.try_number for r in ledger.attempts}):
        row = by_try.get(number)
        record = ledger.record_for(number)
        start, end = (_utc(row.start_date), _utc(row.end_date)) if row is not None else (None, None)
        attempts.append(
            {
                "try_number": number,
                "state": row.state if row is not None else None,
                "start_date": _iso(start),
                "end_date": _iso(end),
                "duration_s": round((end - start).total_seconds(), 3) if start and end else None,
                "hostname": (row.hostname or None) if row is not None else None,
                "cause": record.cause.to_json() if record is not None else None,
                "verdict": record.verdict if record is not None else None,
                "checkpoint": bool(record.checkpoint) if record is not None else number in entries,
                "recorded_at": record.at or None if record is not None else None,
            }
        )
    view = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "state": ti.state,
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "attempts": attempts,
        "budgets": _budgets(session, dag_id, task_id, ti.max_tries, ledger, _json(state[ATTEMPT_KEY].value) if ATTEMPT_KEY in state else None),
        "checkpoint": _checkpoint_view(head, doc, doc_row),
        "watermarks": _watermarks_of(session, dag_id, run_id, task_id, map_index),
    }
    return view


def _task_retries(session: Session, dag_id: str, task_id: str) -> int | None:
    try:
        from airflow.models.serialized_dag import SerializedDagModel

        dag = SerializedDagModel.get_dag(dag_id, session=session)
        if dag is None or not dag.has_task(task_id):
            return None
        return int(dag.get_task(task_id).retries or 0)
    except Exception:
        log.debug("retries of %s.%s not read", dag_id, task_id, exc_info=True)
        return None


def _budgets(session: Session, dag_id: str, task_id: str, max_tries: int | None, ledger: Ledger, attempt: Any) -> dict[str, Any]:
    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    budget = attempt.get("budget") if isinstance(attempt, dict) else None
    budget = budget if isinstance(budget, dict) else {}
    infra = budget.get("infra_retries", cfg.infra_retries)
    breaker = budget.get("breaker_threshold", cfg.breaker_threshold)
    generation = ledger.since_clear(max_tries)
    return budgets(
        generation.attempts,
        infra_limit=int(infra),
        breaker_threshold=int(breaker),
        retries=_task_retries(session, dag_id, task_id),
    )


def _checkpoint_view(head: Any, doc: Any, doc_row: Any) -> dict[str, Any] | None:
    if not isinstance(doc, dict):
        return None
    entries = _checkpoint_attempts(doc)
    latest = entries.get(doc.get("try_number")) or {}
    loops = doc.get("loops") if isinstance(doc.get("loops"), dict) else {}
    steps = doc.get("steps") if isinstance(doc.get("steps"), dict) else {}
    values = doc.get("values") if isinstance(doc.get("values"), dict) else {}
    return {
        "try_number": doc.get("try_number"),
        "generation": doc.get("generation"),
        "plan": latest.get("plan"),
        "from_try": latest.get("from_try"),
        "steps": sorted(steps),
        "loops": {k: int(v.get("done", 0)) if isinstance(v, dict) else 0 for k, v in sorted(loops.items())},
        "values": sorted(values),
        "size_bytes": len(doc_row.value.encode()) if doc_row is not None else None,
        "updated_at": _iso(latest.get("written_at")) or _iso(doc_row.updated_at if doc_row is not None else None),
    }


def _watermark_table_exists(session: Session) -> bool:
    try:
        return inspect(session.get_bind()).has_table("resilience_watermark")
    except Exception:
        return False


def _watermarks_of(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
    """Watermarks this task instance holds, or last committed (read only: a dead holder is not settled here)."""
    if not _watermark_table_exists(session):
        return []
    from airflow_resilience.airflow.watermark_db import to_record, watermarks

    def mine(holder: Any) -> bool:
        return (
            holder is not None
            and holder.dag_id == dag_id
            and holder.run_id == run_id
            and holder.task_id == task_id
            and holder.map_index == map_index
        )

    out = []
    for row in session.execute(select(watermarks)).all():
        try:
            rec = to_record(row)
        except Exception:
            continue
        if mine(rec.holder):
            out.append({"name": rec.name, "role": "holds", "value": rec.value if rec.committed else None,
                        "version": rec.version, "at": _iso(rec.held_since)})
        elif mine(rec.committed_by):
            out.append({"name": rec.name, "role": "committed", "value": rec.value, "version": rec.version,
                        "at": _iso(rec.committed_at)})
    return out


# ------------------------------------------------------------------------------------------------- the fleet
def failed_attempts(
    session: Session, since: datetime, dag_ids: set[str] | None = None, dag_id: str | None = None
) -> list[FailedAttempt]:
    """The failed tries recorded since ``since`` (ledger records), for the DAGs in ``dag_ids`` (``None``: all)."""
    from airflow.models.task_state_store import TaskStateStoreModel as TSS

    query = select(TSS.dag_id, TSS.run_id, TSS.task_id, TSS.map_index, TSS.value).where(
        TSS.key == LEDGER_KEY, TSS.updated_at >= since
    )
    if dag_id is not None:
        query = query.where(TSS.dag_id == dag_id)
    ledgers = [r for r in session.execute(query).all() if dag_ids is None or r.dag_id in dag_ids]
    if not ledgers:
        return []
    # Checkpoint documents and tries of the same task instances, per DAG.
    wanted = {(r.dag_id, r.run_id, r.task_id, r.map_index) for r in ledgers}
    docs: dict[tuple, Any] = {}
    tries: dict[tuple, Any] = {}
    for dag in sorted({r.dag_id for r in ledgers}):
        runs = {r.run_id for r in ledgers if r.dag_id == dag}
        for row in session.execute(
            select(TSS.dag_id, TSS.run_id, TSS.task_id, TSS.map_index, TSS.value).where(
                TSS.dag_id == dag, TSS.run_id.in_(sorted(runs)), TSS.key.startswith(DOC_PREFIX)
            )
        ).all():
            ti_key = (row.dag_id, row.run_id, row.task_id, row.map_index)
            if ti_key in wanted:
                docs[ti_key] = _json(row.value)
        for row in _tries(session, dag, runs):
            tries[(row.dag_id, row.run_id, row.task_id, row.map_index, row.try_number)] = row
    out = []
    for r in ledgers:
        ti_key = (r.dag_id, r.run_id, r.task_id, r.map_index)
        entries = _checkpoint_attempts(docs.get(ti_key))
        resumed = _resumed_tries(entries)
        for record in _ledger(r.value).attempts:
            out.append(_failed(ti_key, record, tries.get((*ti_key, record.try_number)), entries, resumed))
    return out


def _failed(ti_key: tuple, record: AttemptRecord, row: Any, entries: dict[int, dict], resumed: set[int]) -> FailedAttempt:
    entry = entries.get(record.try_number, {})
    written, opened = entry.get("written_at"), entry.get("opened_at")
    return FailedAttempt(
        dag_id=ti_key[0],
        run_id=ti_key[1],
        task_id=ti_key[2],
        map_index=ti_key[3],
        try_number=record.try_number,
        kind=record.cause.kind.value,
        reason=record.cause.reason.value,
        verdict=record.verdict,
        at=_utc(record.at) if record.at else None,
        breaker=record.breaker,
        pool=row.pool if row is not None else None,
        hostname=(row.hostname or None) if row is not None else None,
        started_at=_utc(row.start_date) if row is not None else None,
        ended_at=_utc(row.end_date) if row is not None else None,
        checkpoint_opened_at=_utc(opened) if isinstance(opened, (int, float)) else None,
        checkpoint_written_at=_utc(written) if isinstance(written, (int, float)) else None,
        resumed=record.try_number in resumed,
    )
