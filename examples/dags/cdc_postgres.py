"""Example: replicate a PostgreSQL table through a logical replication slot, each change applied once.

The source (connection ``cdc_source``) runs with ``wal_level = logical``; its table ``items(id int primary
key, name text, qty int)`` is mirrored into the table of the same name in the target (``cdc_target``).

* ``PostgresSlotSource`` peeks committed transactions from the slot without consuming them, and moves the
  slot (``pg_replication_slot_advance``) only once this task instance has succeeded: a kill, an error or a
  lost worker leaves the slot where it was, and the next attempt reads the same transactions again.
* ``apply_once`` makes that re-read harmless: each transaction is applied in one target transaction that
  also moves ``cdc_progress`` to the transaction's commit LSN, and a transaction at or before the recorded
  progress is skipped. ``applied_changes`` keeps one row per applied change (its primary key would refuse a
  second application).

Schedule it every few minutes (or trigger it); runs never overlap on a slot: the second waits.
"""

from __future__ import annotations

import time

import pendulum

from airflow.sdk import Param, dag, task

TARGET_DDL = """
CREATE TABLE IF NOT EXISTS items (id integer PRIMARY KEY, name text, qty integer);
CREATE TABLE IF NOT EXISTS cdc_progress (slot text PRIMARY KEY, lsn pg_lsn NOT NULL);
CREATE TABLE IF NOT EXISTS applied_changes (
    slot text, commit_lsn pg_lsn, seq integer, op text, id integer, applied_at timestamptz DEFAULT now(),
    PRIMARY KEY (slot, commit_lsn, seq)
);
"""


def apply_once(target, slot: str, txn) -> bool:
    """Apply one source transaction to the target unless it already was; True if applied now."""
    cur = target.cursor()
    try:
        cur.execute("INSERT INTO cdc_progress (slot, lsn) VALUES (%s, '0/0') ON CONFLICT DO NOTHING", (slot,))
        cur.execute("SELECT lsn >= %s::pg_lsn FROM cdc_progress WHERE slot = %s FOR UPDATE", (txn.commit_lsn, slot))
        if cur.fetchone()[0]:
            target.rollback()
            return False  # published by an earlier attempt: skip
        for seq, change in enumerate(txn.changes):
            if change.table != "public.items":
                continue
            row = change.columns
            if change.op == "DELETE":
                cur.execute("DELETE FROM items WHERE id = %s", (row["id"],))
            elif change.op in ("INSERT", "UPDATE"):
                if change.old_key is not None:
                    cur.execute("DELETE FROM items WHERE id = %s", (change.old_key["id"],))
                cur.execute(
                    "INSERT INTO items (id, name, qty) VALUES (%s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty",
                    (row["id"], row["name"], row["qty"]),
                )
            elif change.op == "TRUNCATE":
                cur.execute("DELETE FROM items")
            cur.execute(
                "INSERT INTO applied_changes (slot, commit_lsn, seq, op, id) VALUES (%s, %s, %s, %s, %s)",
                (slot, txn.commit_lsn, seq, change.op, row.get("id")),
            )
        cur.execute("UPDATE cdc_progress SET lsn = %s::pg_lsn WHERE slot = %s", (txn.commit_lsn, slot))
        target.commit()
        return True
    except BaseException:
        target.rollback()
        raise
    finally:
        cur.close()


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=2,
    tags=["example", "resilience"],
    params={
        "source_conn_id": Param("cdc_source", type="string"),
        "target_conn_id": Param("cdc_target", type="string"),
        "slot": Param("items_slot", type="string"),
        "max_changes": Param(200, type="integer"),
        "delay": Param(0.0, type="number", description="Seconds to pause after each transaction (demos)"),
    },
)
def cdc_postgres():
    @task(retries=1)
    def replicate(params=None):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from airflow_resilience.providers.postgres import PostgresSlotSource

        slot = params["slot"]
        applied = skipped = changes = 0
        with PostgresSlotSource(slot, postgres_conn_id=params["source_conn_id"], max_changes=params["max_changes"]) as cdc:
            target = PostgresHook(postgres_conn_id=params["target_conn_id"]).get_conn()
            try:
                with target.cursor() as cur:
                    cur.execute(TARGET_DDL)
                target.commit()
                for txn in cdc.transactions():
                    if apply_once(target, slot, txn):
                        applied += 1
                        changes += len(txn.changes)
                    else:
                        skipped += 1
                    time.sleep(float(params["delay"]))
            finally:
                target.close()
            acknowledged = cdc.acknowledge()  # the slot moves there when this task instance succeeds
        return {"applied": applied, "skipped": skipped, "changes": changes, "acknowledged": acknowledged,
                "rolled_forward_to": cdc.rolled_forward_to}

    replicate()


cdc_postgres()
