"""The package's schema under Alembic (no Airflow running): the revisions build exactly what the ORM
metadata builds, adopt the tables of the create_all era, go down and up again; the service and the routes
run no DDL and say what to run when the tables are missing; the pure parts of ``db clean`` and
``uninstall``. The same on a real Airflow (``airflow db migrate``, PostgreSQL and SQLite):
tests/airflow/test_migrations_airflow.py."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, inspect, select, text

watermark_db = pytest.importorskip("airflow_resilience.airflow.watermark_db")

from airflow_resilience.airflow import cli_db  # noqa: E402
from airflow_resilience.airflow.db_manager import upgrade  # noqa: E402
from airflow_resilience.airflow.watermark_db import (  # noqa: E402
    LEGACY_VERSION_TABLE,
    VERSION_TABLE,
    SchemaState,
    WatermarkSchemaError,
    judge_schema,
    revisions,
    schema_status,
)
from airflow_resilience.watermark import Holder  # noqa: E402

FIRST, HEAD = "7c5e3615e1f7", "395a3a8cba2d"
DATA = {"resilience_watermark", "resilience_watermark_history"}


def schema(engine) -> dict:
    """Our tables as the database describes them: columns (name, type, nullable), primary key, indexes."""
    insp = inspect(engine)
    out = {}
    for table in sorted(t for t in insp.get_table_names() if t.startswith("resilience")):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
        }
    return out


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def downgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(watermark_db.MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", watermark_db.MIGRATIONS.as_posix())
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


@pytest.fixture
def engine(tmp_path: Path):
    e = create_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield e
    e.dispose()


def legacy_create_all(engine) -> None:
    """What the API server created before the migrations: ``create_all`` of the two tables and of
    ``resilience_schema_version``, with its one row."""
    watermark_db.metadata.create_all(engine)
    legacy = Table(LEGACY_VERSION_TABLE, MetaData(), Column("component", String(64), primary_key=True),
                   Column("version", Integer, nullable=False))
    legacy.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(legacy).values(component="watermark", version=1))


# ------------------------------------------------------------------------------------------- revisions
def test_the_revisions_are_one_line_from_the_first_to_the_head():
    assert revisions() == (FIRST, HEAD)


def test_the_migrations_build_what_the_orm_builds(engine, tmp_path):
    upgrade(engine)
    orm = create_engine(f"sqlite:///{tmp_path / 'orm.db'}")
    watermark_db.metadata.create_all(orm)
    assert schema(engine) == schema(orm)
    assert set(schema(engine)) == DATA
    assert schema_status(engine).state is SchemaState.CURRENT


def test_tables_of_the_create_all_era_are_adopted_with_their_rows(engine):
    legacy_create_all(engine)
    before = schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(watermark_db.watermarks).values(
            name="orders", value="42", committed=True, version=3, fence=3, has_staged=False, rev=4))
    assert schema_status(engine).state is SchemaState.UNVERSIONED
    upgrade(engine)
    assert schema_status(engine).state is SchemaState.CURRENT
    assert LEGACY_VERSION_TABLE not in tables(engine)
    assert schema(engine) == {t: v for t, v in before.items() if t != LEGACY_VERSION_TABLE}
    with engine.connect() as conn:
        assert conn.execute(select(watermark_db.watermarks.c.value)).scalars().all() == ["42"]


def test_downgrade_restores_the_old_version_table_and_base_leaves_no_table(engine):
    upgrade(engine)
    downgrade(engine, FIRST)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT component, version FROM {LEGACY_VERSION_TABLE}")).all() == [("watermark", 1)]
    status = schema_status(engine)
    assert (status.state, status.revision, status.usable) == (SchemaState.OUTDATED, FIRST, True)
    downgrade(engine, "base")
    assert {t for t in tables(engine) if t.startswith("resilience")} == set()
    assert schema_status(engine).state is SchemaState.MISSING
    upgrade(engine)
    assert schema_status(engine).state is SchemaState.CURRENT


# ----------------------------------------------------------------------------------- the schema's state
@pytest.mark.parametrize(
    ("present", "revision", "state", "usable", "says"),
    [
        (set(), None, SchemaState.MISSING, False, "tables are missing (resilience_watermark, resilience_watermark_history): run `airflow db migrate`"),
        ({"resilience_watermark"}, HEAD, SchemaState.MISSING, False, "missing (resilience_watermark_history)"),
        (DATA, None, SchemaState.UNVERSIONED, True, "adopt them"),
        (DATA, FIRST, SchemaState.OUTDATED, True, "behind the head"),
        (DATA, HEAD, SchemaState.CURRENT, True, "at the head revision"),
        (DATA, "ffffffffffff", SchemaState.NEWER, False, "a newer package migrated this database"),
    ],
)
def test_judge_schema(present, revision, state, usable, says):
    status = judge_schema(present | {"dag_run"}, revision, (FIRST, HEAD))
    assert (status.state, status.usable, status.head) == (state, usable, HEAD)
    assert says in status.message


def test_a_revision_older_than_the_code_needs_is_refused():
    status = judge_schema(DATA, "aaaa", ("aaaa", FIRST, HEAD), required=FIRST)
    assert (status.state, status.usable) == (SchemaState.OUTDATED, False)
    assert "older than this package needs" in status.message and "airflow db migrate" in status.message


# ---------------------------------------------------------------------------------------- no DDL, ever
def test_the_service_creates_no_table_and_names_the_command(engine):
    service = watermark_db.SqlWatermarks(engine)
    with pytest.raises(WatermarkSchemaError, match=r"tables are missing .*run `airflow db migrate`"):
        service.set("orders", 1, actor="test")
    with pytest.raises(WatermarkSchemaError, match="airflow db migrate"):
        service.names()
    assert tables(engine) == set()


def test_tables_dropped_under_a_running_service_are_reported_not_retried(engine):
    upgrade(engine)
    service = watermark_db.SqlWatermarks(engine)
    service.set("orders", 1, actor="test")
    with engine.begin() as conn:
        from airflow_resilience.airflow.db_manager import drop_tables

        assert set(drop_tables(conn)) == DATA | {VERSION_TABLE}
    with pytest.raises(WatermarkSchemaError, match="airflow db migrate"):
        service.set("orders", 2, actor="test")


def test_the_routes_answer_503_and_health_reads_the_state(engine, monkeypatch):
    from fastapi.testclient import TestClient

    from airflow_resilience.airflow import watermark_api

    monkeypatch.setattr(watermark_db, "airflow_engine", lambda: engine)
    monkeypatch.setattr(watermark_db, "_service", watermark_db.SqlWatermarks(engine))
    holder = Holder(ti_id="0190e6f2-0000-7000-8000-000000000001", dag_id="d", run_id="r", task_id="t",
                    map_index=-1, try_number=1)
    monkeypatch.setattr(watermark_api, "_who", lambda claim: holder)
    client = TestClient(watermark_api.create_app())
    claim = {"name": "orders.updated_at", "ti_id": holder.ti_id, "nonce": "n"}

    health = client.get("/v1/health").json()
    assert (health["watermark_schema"], health["schema_state"], health["watermarks_available"]) == (None, "missing", False)
    assert health["expected_watermark_schema"] == HEAD and "airflow db migrate" in health["message"]
    answer = client.post("/v1/watermarks/acquire", json=claim)
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"]["error"] == "WatermarkSchemaError"
    assert "the airflow-resilience tables are missing" in answer.json()["detail"]["message"]
    assert tables(engine) == set()  # neither the route nor health created anything

    upgrade(engine)
    assert client.get("/v1/health").json()["schema_state"] == "current"
    granted = client.post("/v1/watermarks/acquire", json=claim)
    assert granted.status_code == 200 and granted.json()["granted"] is True, granted.text


# ------------------------------------------------------------------------------------ db clean, uninstall
def test_every_key_the_package_writes_is_ours_and_no_other():
    from airflow_resilience.airflow.accounting import ATTEMPT_KEY, EVIDENCE_KEY
    from airflow_resilience.airflow.kubernetes import K8S_KEY
    from airflow_resilience.attempt import HEAD_KEY, doc_key
    from airflow_resilience.ledger import LEDGER_KEY
    from airflow_resilience.resumable import RESUME_KEY, SUBMIT_PREFIX
    from airflow_resilience.watermark import AUTH_KEY

    keys, prefixes = cli_db.our_state_keys()
    ours = [HEAD_KEY, doc_key(1), doc_key(12), LEDGER_KEY, ATTEMPT_KEY, EVIDENCE_KEY, K8S_KEY, RESUME_KEY,
            SUBMIT_PREFIX + "airflow-abc", AUTH_KEY]
    theirs = ["my_checkpoint", "resilience", "resilience:", "resilience:custom", "resilience:checkpoint:try-",
              "resilience:submit:", "resilience:checkpoint:headline", "xresilience:ledger", "resilience_ledger"]
    assert [k for k in ours if not cli_db.is_our_key(k, keys, prefixes)] == []
    assert [k for k in theirs if cli_db.is_our_key(k, keys, prefixes)] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=timezone.utc)),
        ("2026-01-31T12:30:00", datetime(2026, 1, 31, 12, 30, tzinfo=timezone.utc)),
        ("2026-01-31T12:30:00Z", datetime(2026, 1, 31, 12, 30, tzinfo=timezone.utc)),
        ("2026-01-31T14:30:00+02:00", datetime(2026, 1, 31, 12, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_before(text, expected):
    assert cli_db.parse_before(text) == expected


def test_parse_before_names_the_option_and_the_form():
    with pytest.raises(ValueError, match=r"--before '90 days' is not a date: give an ISO date such as 2026-01-31"):
        cli_db.parse_before("90 days")


CUTOFF = 1_000.0


@pytest.mark.parametrize(
    ("committed", "held", "staged", "last_change", "deleted"),
    [
        (False, False, False, 999.0, True),  # reset (or never committed), idle since before the cutoff
        (False, False, False, 1_000.0, False),  # changed at the cutoff: kept
        (True, False, False, 1.0, False),  # a current value: never
        (False, True, False, 1.0, False),  # held by a running try
        (False, False, True, 1.0, False),  # something staged
        (False, False, False, None, False),  # age unknown: kept
    ],
)
def test_forgotten(committed, held, staged, last_change, deleted):
    row = cli_db.NameRow("n", 1, committed, held, staged, last_change)
    assert cli_db.forgotten(row, CUTOFF) is deleted
