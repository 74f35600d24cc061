"""Watermark records in Airflow's metadata database (two tables this package owns), and their rules.

Runs where the metadata DB is: the API server (the task's requests, see ``watermark_api``) and the
``airflow resilience watermark`` CLI. Every change is an optimistic compare-and-set on the record's ``rev``
column, so it is atomic on PostgreSQL and SQLite alike without table locks; the decisions themselves are
the pure transitions of :mod:`airflow_resilience.watermark`.

Tables (created and upgraded by ``airflow db migrate`` through
:class:`~airflow_resilience.airflow.db_manager.ResilienceDBManager`, whose Alembic revisions are in
``migrations/``; their version is kept in ``alembic_version_resilience``):

* ``resilience_watermark`` — one row per name: committed value, version, fence, holder, staged value.
* ``resilience_watermark_history`` — append-only: every commit, roll-forward, discard, fence, set, reset.

Nothing here runs DDL. When the tables are missing, every operation raises :class:`WatermarkSchemaError`
("run ``airflow db migrate``"); :func:`schema_status` reads the schema's state without changing it.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
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
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from airflow_resilience import watermark as core
from airflow_resilience.errors import UnknownWatermarkError, WatermarkError
from airflow_resilience.watermark import AUTH_KEY, Event, Holder, HolderStatus, Record

log = logging.getLogger(__name__)

#: The tables as of the newest revision in ``migrations/versions`` (``airflow db migrate`` on a database
#: without them creates them from this metadata and stamps the head revision, as Airflow does for every
#: external DB manager; tests/unit/test_migrations.py checks that both ways give the same schema).
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

# ------------------------------------------------------------------------------------------- the schema
#: Alembic's version table for this package's tables (never Airflow's own ``alembic_version``).
VERSION_TABLE = "alembic_version_resilience"
#: The version table of the ``create_all`` era (before the Alembic revisions); dropped by revision 395a3a8cba2d.
LEGACY_VERSION_TABLE = "resilience_schema_version"
#: Every table this package may have created, the version tables included (``uninstall`` drops them all).
ALL_TABLES = (history.name, watermarks.name, LEGACY_VERSION_TABLE, VERSION_TABLE)
#: The oldest revision whose tables this code reads and writes: a database at it or later is served (the
#: health route says when it is behind the head), an older one is refused until ``airflow db migrate``.
REQUIRED_REVISION = "7c5e3615e1f7"
#: The Alembic script directory (``env.py``, ``versions/``) shipped in the wheel.
MIGRATIONS = Path(__file__).with_name("migrations")

MIGRATE_HINT = "run `airflow db migrate` (it creates and upgrades the airflow-resilience tables)"


class WatermarkSchemaError(WatermarkError):
    """The watermark tables are missing, or at a revision this package cannot use. Nothing was read or written."""


class SchemaState(str, Enum):
    """Where the metadata DB's watermark tables stand against this package's revisions."""

    MISSING = "missing"  #: a table is absent: ``airflow db migrate`` creates them
    UNVERSIONED = "unversioned"  #: the tables of the create_all era, no Alembic version yet: served; migrate adopts them
    OUTDATED = "outdated"  #: an older revision: served if at or after REQUIRED_REVISION; migrate upgrades
    CURRENT = "current"  #: the head revision
    NEWER = "newer"  #: a revision this package does not know (a newer airflow-resilience migrated it)


@dataclass(frozen=True)
class SchemaStatus:
    """The schema as read from the database, and what that means."""

    state: SchemaState
    #: The revision recorded in ``alembic_version_resilience`` (``None``: no version recorded).
    revision: str | None
    #: The head revision of this package's migrations.
    head: str
    #: True when the watermark operations can run on it.
    usable: bool
    #: What it means and what to do, for the health route, the CLI and the error.
    message: str


def judge_schema(
    tables: Collection[str], revision: str | None, revisions: Sequence[str], required: str = REQUIRED_REVISION
) -> SchemaStatus:
    """The schema's state from the tables present, the recorded revision and this package's revisions
    (oldest first). Pure."""
    head = revisions[-1]
    absent = sorted({watermarks.name, history.name} - set(tables))
    if absent:
        state, usable = SchemaState.MISSING, False
        message = f"the airflow-resilience tables are missing ({', '.join(absent)}): {MIGRATE_HINT}"
    elif revision is None:
        state, usable = SchemaState.UNVERSIONED, True
        message = (f"the watermark tables have no Alembic version yet (created before {VERSION_TABLE} "
                   f"existed): served as they are; {MIGRATE_HINT} to adopt them")
    elif revision not in revisions:
        state, usable = SchemaState.NEWER, False
        message = (f"{VERSION_TABLE} records revision {revision!r}, which this airflow-resilience does not know "
                   f"(its head is {head!r}): a newer package migrated this database. Install that version on "
                   f"every Airflow component, or roll the tables back with it first (docs/upgrade.md)")
    elif revisions.index(revision) < revisions.index(required):
        state, usable = SchemaState.OUTDATED, False
        message = f"the watermark tables are at revision {revision!r}, older than this package needs ({required!r}): {MIGRATE_HINT}"
    elif revision != head:
        state, usable = SchemaState.OUTDATED, True
        message = f"the watermark tables are at revision {revision!r}, behind the head {head!r}: served; {MIGRATE_HINT}"
    else:
        state, usable = SchemaState.CURRENT, True
        message = f"the watermark tables are at the head revision {head!r}"
    return SchemaStatus(state, revision, head, usable, message)


_revisions: tuple[str, ...] | None = None


def revisions() -> tuple[str, ...]:
    """This package's Alembic revisions, oldest first (read from ``migrations/versions`` once)."""
    global _revisions
    if _revisions is None:
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS))
        _revisions = tuple(reversed([r.revision for r in script.walk_revisions()]))
    return _revisions


def schema_status(engine: Engine) -> SchemaStatus:
    """Read only: which of our tables exist and which revision ``alembic_version_resilience`` records."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        revision = None
        if VERSION_TABLE in tables:
            version = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))
            revision = conn.execute(select(version.c.version_num)).scalar()
    return judge_schema(tables, revision, revisions())


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
    """Watermark operations on the metadata DB. ``engine`` is Airflow's (``airflow.settings.engine``).

    It never creates or changes a table: ``airflow db migrate`` does. Each operation first checks (read
    only) that the tables are there at a usable revision, and raises :class:`WatermarkSchemaError`
    otherwise; once they were found usable the check is not repeated, until a statement fails (tables
    dropped under a running server: ``airflow resilience uninstall``, a downgrade)."""

    ATTEMPTS = 25

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._schema_ok = False

    # -- the schema (read only)
    def require_schema(self) -> SchemaStatus | None:
        """Raise :class:`WatermarkSchemaError` unless the tables can be used; the status when it looked."""
        if self._schema_ok:
            return None
        status = schema_status(self.engine)
        if not status.usable:
            raise WatermarkSchemaError(status.message)
        if status.state is not SchemaState.CURRENT:
            log.warning("airflow-resilience: %s", status.message)
        self._schema_ok = True
        return status

    def _failed(self, exc: Exception) -> None:
        """A statement failed: when our tables are gone, say so (instead of retrying or a bare SQL error)."""
        self._schema_ok = False
        try:
            self.require_schema()
        except WatermarkSchemaError:
            raise
        except Exception:  # the database itself is unwell: the original error says more
            pass

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

    def _query(self, statement: Any) -> list[Any]:
        self.require_schema()
        try:
            with self.engine.connect() as conn:
                return conn.execute(statement).all()
        except (OperationalError, ProgrammingError) as exc:
            self._failed(exc)
            raise

    def names(self) -> list[str]:
        return [r.name for r in self._query(select(watermarks.c.name).order_by(watermarks.c.name))]

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._query(select(history).where(history.c.name == name).order_by(history.c.id.desc()).limit(limit))
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
        self.require_schema()
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
                if isinstance(exc, OperationalError):
                    self._failed(exc)  # "no such table" is no race: say what to run
                last = exc
                time.sleep(min(0.5, 0.01 * (attempt + 1)))
            except ProgrammingError as exc:  # PostgreSQL: a missing table
                self._failed(exc)
                raise
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
        rows = self._query(select(watermarks.c.name, watermarks.c.holder).where(watermarks.c.holder.is_not(None)))
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


def current_schema() -> SchemaStatus:
    """The watermark schema's state in Airflow's metadata DB. Read only (the health route's answer)."""
    return schema_status(airflow_engine())


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
