"""The package's tables under ``airflow db migrate`` on a real Airflow 3.3.2 metadata DB (PostgreSQL and
SQLite; the CLI only, no scheduler or API server): created with the database, removed without a trace by
``airflow resilience uninstall -y``, adopted from the create_all era, rolled back with
``airflow resilience db downgrade``, rebuilt from the migration files with the ORM's schema, and dropped by
``airflow db reset``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, inspect

pytestmark = pytest.mark.airflow

HEAD, FIRST = "395a3a8cba2d", "7c5e3615e1f7"
OURS = {"resilience_watermark", "resilience_watermark_history", "alembic_version_resilience"}
LEGACY = "resilience_schema_version"
USER_KEYS = {"my_checkpoint", "resilience:custom"}  # a DAG author's keys: an uninstall keeps them


@pytest.fixture
def blank(airflow_database: str):
    """An Airflow home and an empty metadata DB (nothing started, nothing migrated)."""
    from airflow_resilience.testing.harness import AirflowEnvironment

    af = AirflowEnvironment.create(database=airflow_database, start=False)
    engine = create_engine(af.database_url)
    af.engine = engine
    try:
        yield af
    finally:
        engine.dispose()
        af.stop()


def our_tables(af) -> set[str]:
    return {t for t in inspect(af.engine).get_table_names() if t in OURS or t == LEGACY or t.startswith("resilience")}


def revision(af) -> str | None:
    rows = af.sql("SELECT version_num FROM alembic_version_resilience")
    return rows[0][0] if rows else None


def schema(af) -> dict[str, Any]:
    insp = inspect(af.engine)
    return {
        t: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)),
        }
        for t in sorted(our_tables(af))
    }


def our_keys() -> list[str]:
    from airflow_resilience.airflow.accounting import ATTEMPT_KEY, EVIDENCE_KEY
    from airflow_resilience.airflow.kubernetes import K8S_KEY
    from airflow_resilience.attempt import HEAD_KEY, doc_key
    from airflow_resilience.ledger import LEDGER_KEY
    from airflow_resilience.resumable import RESUME_KEY, SUBMIT_PREFIX
    from airflow_resilience.watermark import AUTH_KEY

    return [HEAD_KEY, doc_key(1), doc_key(2), LEDGER_KEY, ATTEMPT_KEY, EVIDENCE_KEY, K8S_KEY, RESUME_KEY,
            SUBMIT_PREFIX + "airflow-0123", AUTH_KEY]


def seed_state_store(af) -> None:
    """A DAG run and, for one of its task instances, a row per key the package writes and two of the user's."""
    now = datetime.now(timezone.utc)
    af.sql("INSERT INTO dag_run (dag_id, run_id, run_type, run_after, clear_number, span_status) "
           "VALUES ('d', 'r', 'manual', :now, 0, 'not_started')", write=True, now=now)
    run = af.sql("SELECT id FROM dag_run WHERE dag_id = 'd' AND run_id = 'r'")[0][0]
    for key in [*our_keys(), *sorted(USER_KEYS)]:
        af.sql("INSERT INTO task_state_store (dag_run_id, task_id, map_index, key, dag_id, run_id, value, updated_at) "
               "VALUES (:run, 't', -1, :key, 'd', 'r', :value, :now)", write=True, run=run, key=key,
               value=json.dumps({"seeded": key}), now=now)


def state_keys(af) -> set[str]:
    return {r[0] for r in af.sql("SELECT key FROM task_state_store")}


def create_all_era(af) -> None:
    """The tables as the API server created them before the migrations, with a committed watermark."""
    from airflow_resilience.airflow import watermark_db

    watermark_db.metadata.create_all(af.engine)
    legacy = Table(LEGACY, MetaData(), Column("component", String(64), primary_key=True),
                   Column("version", Integer, nullable=False))
    legacy.create(af.engine)
    with af.engine.begin() as conn:
        conn.execute(insert(legacy).values(component="watermark", version=1))
        conn.execute(insert(watermark_db.watermarks).values(
            name="orders.updated_at", value="41", committed=True, version=1, fence=1, has_staged=False, rev=2))


@pytest.mark.sqlite_too
def test_db_migrate_owns_the_tables_and_uninstall_leaves_no_trace(blank):
    """One flow per database (each step is an ``airflow`` CLI process: the expensive part)."""
    from airflow_resilience.airflow.watermark_db import SqlWatermarks

    af = blank
    # 1. A new deployment: `airflow db migrate` creates our tables (from the ORM, stamped at the head).
    af.airflow("db", "migrate")
    assert our_tables(af) == OURS and revision(af) == HEAD
    orm = schema(af)
    SqlWatermarks(af.engine).set("orders.updated_at", 42, actor="test")
    seed_state_store(af)
    assert af.sql("SELECT count(*) FROM resilience_watermark_history")[0][0] == 1

    # 2. Uninstall: our tables and our state-store rows go, the user's rows stay; the command is audited.
    done = af.airflow("resilience", "uninstall", "-y")
    assert "dropped 3 tables" in done.stdout and f"deleted {len(our_keys())} task-state-store rows" in done.stdout, done.stdout
    assert our_tables(af) == set()
    assert state_keys(af) == USER_KEYS
    audit = af.sql("SELECT extra FROM log WHERE event = 'cli_resilience_uninstall'")
    assert [json.loads(a[0])["state_store_rows"] for a in audit] == [len(our_keys())]

    # 3. A second `airflow db migrate` brings them back, empty.
    af.airflow("db", "migrate")
    assert our_tables(af) == OURS and revision(af) == HEAD and schema(af) == orm
    assert af.sql("SELECT count(*) FROM resilience_watermark")[0][0] == 0
    assert state_keys(af) == USER_KEYS

    # 4. A deployment of the create_all era (tables, no Alembic version): migrate adopts them, rows kept.
    af.sql("DROP TABLE resilience_watermark_history", write=True)
    af.sql("DROP TABLE resilience_watermark", write=True)
    af.sql("DROP TABLE alembic_version_resilience", write=True)
    create_all_era(af)
    af.airflow("db", "migrate")
    assert revision(af) == HEAD and our_tables(af) == OURS
    assert af.sql("SELECT value, version FROM resilience_watermark") == [("41", 1)]
    assert schema(af) == orm

    # 5. Rollback to base takes every table of ours away (the version table stays, empty).
    af.airflow("resilience", "db", "downgrade", "--to-revision", "base", "-y")
    assert our_tables(af) == {"alembic_version_resilience"} and revision(af) is None

    # 6. Rebuilt from the migration files, not the ORM: the same schema on this database.
    af.airflow("db", "migrate", "--use-migration-files")
    assert revision(af) == HEAD and schema(af) == orm

    # 7. `airflow db reset` drops ours with Airflow's tables.
    af.airflow("db", "reset", "-y", "--skip-init")
    assert our_tables(af) == set()
