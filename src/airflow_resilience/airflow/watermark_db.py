"""Watermark records in Airflow's metadata database (two tables this package owns), and their rules.

Runs where the metadata DB is: the API server (the task's requests, see ``watermark_api``) and the
``airflow resilience watermark`` CLI. Every change is an optimistic compare-and-set on the record's ``rev``
column, so it is atomic on PostgreSQL and SQLite alike without table locks; the decisions themselves are
the pure transitions of :mod:`airflow_resilience.watermark`.

Tables (created by :func:`migrate`, which the API server runs at its first watermark request and
``airflow resilience watermark migrate`` runs on demand; both are idempotent):

* ``resilience_watermark`` — one row per name: committed value, version, fence, holder, staged value.
* ``resilience_watermark_history`` — append-only: every commit, roll-forward, discard, fence, set, reset.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from airflow_resilience import watermark as core
from airflow_resilience.errors import UnknownWatermarkError, WatermarkError
from airflow_resilience.watermark import AUTH_KEY, Event, Holder, HolderStatus, Record


SCHEMA_VERSION = 1
metadata = MetaData()

watermarks = Table(
    "resilience_watermark",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("value", Text, nullable=True),
    Column("committed", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=0),
    Column("fence", Integer, nullable=False, default=0),
    Column("holder", Text, nullable=True),
    Column("held_since", Float, nullable=True),
    Column("has_staged", Boolean, nullable=False, default=False),
    Column("staged", Text, nullable=True),
    Column("committed_at", Float, nullable=True),
    Column("committed_by", Text, nullable=True),
    Column("rev", Integer, nullable=False, default=0),
)

history = Table(
    "resilience_watermark_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("action", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("value", Text, nullable=True),
    Column("previous", Text, nullable=True),
    Column("holder", Text, nullable=True),
    Column("detail", Text, nullable=True),
)

schema_version = Table(
    "resilience_schema_version",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

#: The watermark tables' version as recorded (``migrate`` writes it, the health route reads it).
_VERSION_QUERY = select(schema_version.c.version).where(schema_version.c.component == "watermark")

_migrated: set[int] = set()
_migrate_lock = threading.Lock()


def migrate(engine: Engine) -> int:
    """Create this package's tables if absent and record the schema version; returns that version."""
    with _migrate_lock:
        if id(engine) in _migrated:
            return SCHEMA_VERSION
        for attempt in range(3):
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except (IntegrityError, OperationalError, ProgrammingError):
                # another process (an API server worker, a CLI) created a table between check and create
                if attempt == 2:
                    raise
                time.sleep(0.2)
        with engine.begin() as conn:
            row = conn.execute(_VERSION_QUERY).first()
            if row is None:
                try:
                    conn.execute(insert(schema_version).values(component="watermark", version=SCHEMA_VERSION))
                except IntegrityError:  # another process recorded it first
                    pass
            elif row.version > SCHEMA_VERSION:
                raise WatermarkError(
                    f"resilience_schema_version says watermark tables are at version {row.version}, newer "
                    f"than this airflow-resilience knows ({SCHEMA_VERSION}); upgrade the package everywhere"
                )
        _migrated.add(id(engine))
        return SCHEMA_VERSION


# ----------------------------------------------------------------------------------- row <-> record
def _dump(value: Any) -> str:
    return json.dumps(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _holder_json(holder: Holder | None) -> str | None:
    return None if holder is None else json.dumps(holder.to_json(), sort_keys=True)


def to_record(row: Any) -> Record:
    try:
        return Record(
            name=row.name,
            value=_load(row.value),
            committed=bool(row.committed),
            version=row.version,
            fence=row.fence,
            holder=Holder.from_json(_load(row.holder)),
            held_since=row.held_since,
            staged=_load(row.staged) if row.has_staged else core._NOTHING,
            committed_at=row.committed_at,
            committed_by=Holder.from_json(_load(row.committed_by)),
        )
    except (ValueError, TypeError) as exc:
        raise WatermarkError(
            f"watermark {row.name!r}: the stored record cannot be decoded ({exc}); it is left untouched. "
            "Inspect it in table resilience_watermark; 'airflow resilience watermark reset' starts it over"
        ) from None


def _columns(rec: Record) -> dict[str, Any]:
    return {
        "value": _dump(rec.value) if rec.committed else None,
        "committed": rec.committed,
        "version": rec.version,
        "fence": rec.fence,
        "holder": _holder_json(rec.holder),
        "held_since": rec.held_since,
        "has_staged": rec.has_staged,
        "staged": _dump(rec.staged) if rec.has_staged else None,
        "committed_at": rec.committed_at,
        "committed_by": _holder_json(rec.committed_by),
    }


class _Conflict(Exception):
    """Another writer changed the record between our read and our write."""


# -------------------------------------------------------------------------------------- the service
class SqlWatermarks:
    """Watermark operations on the metadata DB. ``engine`` is Airflow's (``airflow.settings.engine``)."""

    ATTEMPTS = 25

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        migrate(engine)

    # -- reading
    def _row(self, conn: Connection, name: str) -> Any:
        return conn.execute(select(watermarks).where(watermarks.c.name == name)).first()

    def holder_status(self, conn: Connection, holder: Holder | None) -> HolderStatus | None:
        """What became of the holder's try: from ``task_instance``, else ``task_instance_history``."""
        if holder is None:
            return None
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.taskinstancehistory import TaskInstanceHistory

        try:
            ti_id = UUID(holder.ti_id)
        except ValueError:
            return HolderStatus.ENDED
        state = conn.execute(select(TaskInstance.state).where(TaskInstance.id == ti_id)).scalar()
        if state is None:
            state = conn.execute(
                select(TaskInstanceHistory.state).where(TaskInstanceHistory.task_instance_id == ti_id)
            ).scalar()
        if state == "running":
            return HolderStatus.ALIVE
        if state == "success":
            return HolderStatus.SUCCEEDED
        return HolderStatus.ENDED

    def read(self, name: str) -> Record:
        """The record as it stands, with a dead holder settled (committed for it if it had succeeded)."""
        record = self._change(name, lambda rec, status: (*core.settle(rec, status, self.clock()), None), create=False)[1]
        return record

    def names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(watermarks.c.name).order_by(watermarks.c.name)).scalars())

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(history).where(history.c.name == name).order_by(history.c.id.desc()).limit(limit)
            ).all()
        return [
            {
                "at": r.at,
                "action": r.action,
                "version": r.version,
                "value": _load(r.value),
                "previous": _load(r.previous),
                "holder": _load(r.holder),
                "detail": r.detail or "",
            }
            for r in rows
        ]

    # -- one atomic change
    def _change(self, name: str, fn: Callable[[Record, HolderStatus | None], tuple], *, create: bool = True):
        """Apply ``fn(record, holder_status) -> (record, events, answer)`` atomically; returns (answer, record)."""
        last: Exception | None = None
        for attempt in range(self.ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    row = self._row(conn, name)
                    if row is None and not create:
                        raise UnknownWatermarkError(
                            f"no watermark named {name!r}; 'airflow resilience watermark list' shows the names"
                        )
                    rec = Record(name) if row is None else to_record(row)
                    new, events, answer = fn(rec, self.holder_status(conn, rec.holder))
                    if new == rec and not events:
                        return answer, rec
                    values = _columns(new)
                    if row is None:
                        conn.execute(insert(watermarks).values(name=name, rev=1, **values))
                    else:
                        done = conn.execute(
                            update(watermarks)
                            .where(watermarks.c.name == name, watermarks.c.rev == row.rev)
                            .values(rev=row.rev + 1, **values)
                        )
                        if done.rowcount != 1:
                            raise _Conflict()
                    self._log(conn, name, events)
                    return answer, new
            except (_Conflict, IntegrityError, OperationalError) as exc:  # lost a race, or SQLite busy
                last = exc
                time.sleep(min(0.5, 0.01 * (attempt + 1)))
        raise WatermarkError(f"watermark {name!r}: could not apply a change after {self.ATTEMPTS} attempts: {last}")

    #: History rows of a name older than this many days are deleted when the name is next changed
    #: (``[resilience] watermark_history_retention_days``; 0 keeps them all).
    history_retention_days: float = 90.0

    def _log(self, conn: Connection, name: str, events: list[Event]) -> None:
        now = self.clock()
        if events and self.history_retention_days > 0:
            conn.execute(
                delete(history).where(history.c.name == name, history.c.at < now - self.history_retention_days * 86400)
            )
        for e in events:
            conn.execute(
                insert(history).values(
                    name=name,
                    at=now,
                    action=e.action.value,
                    version=e.version,
                    value=_dump(e.value),
                    previous=_dump(e.previous),
                    holder=_holder_json(e.holder),
                    detail=e.detail,
                )
            )

    # -- the holder's operations
    def acquire(self, name: str, who: Holder) -> core.Grant | core.Held:
        return self._change(name, lambda rec, st: core.acquire(rec, who, st, self.clock()))[0]

    def stage(self, name: str, who: Holder, fence: int, value: Any) -> None:
        self._change(name, lambda rec, st: (core.stage(rec, who, fence, value, st), [], None), create=False)

    def commit(self, name: str, who: Holder, fence: int) -> None:
        self._change(name, lambda rec, st: (*core.commit(rec, who, fence, self.clock(), st), None), create=False)

    def release(self, name: str, who: Holder, fence: int) -> None:
        self._change(name, lambda rec, st: (*core.release(rec, who, fence), None), create=False)

    def release_user_marked(self, ti_id: str) -> list[str]:
        """A user changed the state of running task instance ``ti_id``: end its holds, discarding what they
        staged (see :func:`airflow_resilience.watermark.user_marked`). Returns the names released."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(watermarks.c.name, watermarks.c.holder).where(watermarks.c.holder.is_not(None))).all()
        names = [r.name for r in rows if (_load(r.holder) or {}).get("ti_id") == ti_id]
        for name in names:
            self._change(name, lambda rec, st: (*core.user_marked(rec, ti_id), None), create=False)
        return names

    # -- operators' commands
    def set(self, name: str, value: Any, *, backwards: bool = False, force: bool = False, actor: str = "") -> Record:
        core.check_value(name, value)
        return self._change(
            name,
            lambda rec, st: (
                *core.operator_set(rec, value, st, self.clock(), backwards=backwards, force=force, actor=actor),
                None,
            ),
        )[1]

    def reset(self, name: str, *, force: bool = False, actor: str = "") -> Record:
        return self._change(
            name, lambda rec, st: (*core.operator_reset(rec, st, self.clock(), force=force, actor=actor), None), create=False
        )[1]

    # -- who is asking
    def identify(self, ti_id: str, nonce: str) -> Holder:
        """See :func:`identify` (this service's engine)."""
        return identify(self.engine, ti_id, nonce)


# ----------------------------------------------------------------------------------- who is asking
def identify(engine: Engine, ti_id: str, nonce: str) -> Holder:
    """The running try named ``ti_id``, if ``nonce`` matches the digest that try wrote in its own state
    store (so the request comes from that try's process); :class:`PermissionError` otherwise. Reads
    Airflow's own tables only: nothing of this package's schema is touched (or created) before a caller is
    identified."""
    import hashlib

    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.taskinstance import TaskInstance

    try:
        key = UUID(ti_id)
    except ValueError:
        raise PermissionError(f"ti_id {ti_id!r} is not a task instance id") from None
    with engine.connect() as conn:
        ti = conn.execute(
            select(
                TaskInstance.dag_id,
                TaskInstance.run_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.try_number,
            ).where(TaskInstance.id == key)
        ).first()
        if ti is None:
            raise PermissionError(f"task instance {ti_id} is not a current try (a newer try replaced it)")
        stored = conn.execute(
            select(TaskStateStoreModel.value).where(
                TaskStateStoreModel.dag_id == ti.dag_id,
                TaskStateStoreModel.run_id == ti.run_id,
                TaskStateStoreModel.task_id == ti.task_id,
                TaskStateStoreModel.map_index == ti.map_index,
                TaskStateStoreModel.key == AUTH_KEY,
            )
        ).scalar()
    try:
        proof = json.loads(stored) if stored else {}
    except ValueError:
        proof = {}
    digest = hashlib.sha256(nonce.encode()).hexdigest()
    if proof.get("ti_id") != ti_id or not hmac.compare_digest(str(proof.get("sha256", "")), digest):
        raise PermissionError(f"the request does not come from the running process of task instance {ti_id}")
    return Holder(
        ti_id=ti_id,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        try_number=ti.try_number,
    )


_service: SqlWatermarks | None = None
_service_lock = threading.Lock()


def airflow_engine() -> Engine:
    """Airflow's engine in this process (configured on first use)."""
    from airflow import settings

    if getattr(settings, "engine", None) is None:
        settings.configure_orm()
    return settings.engine


def recorded_schema_version() -> int | None:
    """The watermark schema version recorded in the metadata DB, ``None`` when the tables are absent. Read
    only (the health route's answer)."""
    from sqlalchemy import inspect

    engine = airflow_engine()
    if not inspect(engine).has_table(schema_version.name):
        return None
    with engine.connect() as conn:
        return conn.execute(_VERSION_QUERY).scalar()


def service() -> SqlWatermarks:
    """The process's service on Airflow's own engine (API server, CLI)."""
    global _service
    with _service_lock:
        if _service is None:
            _service = SqlWatermarks(airflow_engine())
            try:
                from airflow_resilience.airflow.runtime import settings as resilience_settings

                _service.history_retention_days = resilience_settings().watermark_history_retention_days
            except Exception:  # a bad value is reported where settings are read; keep the default here
                pass
        return _service
