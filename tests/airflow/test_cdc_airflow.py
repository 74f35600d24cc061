"""CDC through a PostgreSQL logical replication slot on a real Airflow: 1,000 inserts/updates/deletes while
the example DAG runs again and again and its task runners are SIGKILLed at random.

Logical decoding needs ``wal_level = logical``; the shared PostgreSQL here runs ``replica``, so the test
starts a private cluster (``initdb`` on a free loopback port). Without PostgreSQL binaries it skips (a
failure under ``CI=true``). PostgreSQL only: logical decoding is the subject; Airflow's own metadata DB is
the session's."""

from __future__ import annotations

import random
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

from airflow_resilience.testing.pgcluster import PostgresUnavailable, PrivatePostgres
from airflow_resilience.testing.services import unavailable
from airflow_resilience.watermark import lsn_to_int

pytestmark = pytest.mark.airflow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dags" / "cdc_postgres.py"
DAG = "cdc_postgres"
TASK = "replicate"
CHANGES = 1000


@pytest.fixture(scope="module")
def logical_pg():
    try:
        pg = PrivatePostgres(settings={"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}).start()
    except PostgresUnavailable as exc:
        unavailable(f"no private PostgreSQL cluster for logical decoding: {exc}")
    try:
        yield pg
    finally:
        pg.stop()


class Writer(threading.Thread):
    """Makes ``CHANGES`` single-row changes in small transactions: 55% inserts, 30% updates, 15% deletes."""

    def __init__(self, pg: PrivatePostgres, db: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.pg, self.db, self.rng = pg, db, random.Random(seed)
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self.pg.connect(self.db, autocommit=False)
            cur = conn.cursor()
            live: list[int] = []
            next_id = 1
            while self.done < CHANGES:
                for _ in range(min(self.rng.randint(1, 8), CHANGES - self.done)):
                    roll = self.rng.random()
                    if not live or roll < 0.55:
                        cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (next_id, f"item {next_id}'s", self.rng.randint(0, 99)))
                        live.append(next_id)
                        next_id += 1
                    elif roll < 0.85:
                        cur.execute("UPDATE items SET qty = qty + 1, name = %s WHERE id = %s",
                                    (f"renamed {self.done}", self.rng.choice(live)))
                    else:
                        victim = live.pop(self.rng.randrange(len(live)))
                        cur.execute("DELETE FROM items WHERE id = %s", (victim,))
                    self.done += 1
                conn.commit()
                time.sleep(self.rng.uniform(0.05, 0.15))
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class SlotWatch(threading.Thread):
    """Samples the slot's confirmed LSN, then the target's applied progress: the first must never pass the
    second (the slot never acknowledges a change that was not published)."""

    def __init__(self, pg: PrivatePostgres, src: str, tgt: str, slot: str) -> None:
        super().__init__(daemon=True)
        self.pg, self.src, self.tgt, self.slot = pg, src, tgt, slot
        self.stop_event = threading.Event()
        self.samples = 0
        self.violations: list[tuple[str, str]] = []

    def run(self) -> None:
        src, tgt = self.pg.connect(self.src), self.pg.connect(self.tgt)
        try:
            while not self.stop_event.wait(0.1):
                with src.cursor() as cur:
                    cur.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
                    confirmed = cur.fetchone()[0]
                with tgt.cursor() as cur:
                    try:
                        cur.execute("SELECT lsn::text FROM cdc_progress WHERE slot = %s", (self.slot,))
                        row = cur.fetchone()
                    except Exception:  # the DAG has not created the table yet
                        row = None
                progress = row[0] if row else "0/0"
                self.samples += 1
                if self.initial is not None and lsn_to_int(confirmed) > max(lsn_to_int(progress), lsn_to_int(self.initial)):
                    self.violations.append((confirmed, progress))
        finally:
            src.close()
            tgt.close()

    initial: str | None = None


def rows(pg: PrivatePostgres, db: str, sql: str) -> list[tuple]:
    conn = pg.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def progress_of(pg: PrivatePostgres, tgt: str, slot: str) -> int:
    try:
        got = rows(pg, tgt, f"SELECT count(*) FROM applied_changes WHERE slot = '{slot}'")
    except Exception:  # table not created yet
        return 0
    return got[0][0]


def wait_applied(pg: PrivatePostgres, tgt: str, slot: str, before: int, changes: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress_of(pg, tgt, slot) >= before + changes:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("airflow_database", ["postgres"], indirect=True)
def test_cdc_through_a_slot_with_random_runner_kills(airflow_env, logical_pg):
    af, pg = airflow_env, logical_pg
    tag = secrets.token_hex(3)
    src, tgt, slot = f"src_{tag}", f"tgt_{tag}", f"items_{tag}"
    pg.create_database(src)
    pg.create_database(tgt)
    rows(pg, src, "CREATE TABLE items (id integer PRIMARY KEY, name text, qty integer)")
    rows(pg, src, f"SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')")
    for conn_id, db in ((f"cdc_source_{tag}", src), (f"cdc_target_{tag}", tgt)):
        af.create_connection(conn_id, "postgres", host="127.0.0.1", port=pg.port, login="postgres", schema=db)
    af.deploy(EXAMPLE)
    conf = {"source_conn_id": f"cdc_source_{tag}", "target_conn_id": f"cdc_target_{tag}", "slot": slot,
            "max_changes": 150, "delay": 0.02}

    writer = Writer(pg, src, seed=7)
    watch = SlotWatch(pg, src, tgt, slot)
    watch.initial = rows(pg, src, f"SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'")[0][0]
    rng = random.Random(11)
    writer.start()
    watch.start()
    results, kills, runs = [], 0, 0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            writer_done = not writer.is_alive()
            run_id = af.trigger(DAG, conf=conf)
            runs += 1
            if runs % 2 == 1 and (not writer_done or kills < 2):
                # Every other run: SIGKILL its runner in the middle of publishing, after a random number of
                # its transactions reached the target (so the next attempt re-reads them from the slot). On a
                # loaded machine the writer may finish before two kills: keep trying while changes remain.
                before = progress_of(pg, tgt, slot)
                wanted = rng.randint(1, 4)
                if wait_applied(pg, tgt, slot, before, wanted, timeout=60 if not writer_done else 15):
                    try:
                        af.signal_runner(DAG, run_id, TASK, signal.SIGKILL)
                        kills += 1
                    except LookupError:
                        pass  # finished first
            assert af.wait_for_run(DAG, run_id, timeout=180) == "success", af.try_history(DAG, run_id, TASK)
            tries = af.try_history(DAG, run_id, TASK)
            results.append(af.xcom(DAG, run_id, TASK))
            assert len(tries) <= 2
            if writer_done and results[-1]["applied"] == 0 and results[-1]["skipped"] == 0:
                break
        else:
            pytest.fail(f"replication did not catch up in time: {results[-3:]}")
    finally:
        watch.stop_event.set()
        watch.join(timeout=10)
        writer.join(timeout=60)
    assert writer.error is None, writer.error
    assert writer.done == CHANGES

    source = rows(pg, src, "SELECT id, name, qty FROM items ORDER BY id")
    target = rows(pg, tgt, "SELECT id, name, qty FROM items ORDER BY id")
    assert target == source and len(source) > 100
    applied = rows(pg, tgt, f"SELECT count(*), count(DISTINCT (commit_lsn, seq)) FROM applied_changes WHERE slot = '{slot}'")[0]
    assert applied == (CHANGES, CHANGES)  # every change applied exactly once
    assert watch.samples > 50 and watch.violations == []
    confirmed = rows(pg, src, f"SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'")[0][0]
    progress = rows(pg, tgt, f"SELECT lsn::text FROM cdc_progress WHERE slot = '{slot}'")[0][0]
    assert confirmed == progress  # caught up: the slot acknowledged exactly what was published
    assert kills >= 2 and sum(r["skipped"] for r in results) >= kills, (kills, results)  # re-reads absorbed
    print(f"\nCDC: {runs} runs, {kills} runner kills, {sum(r['changes'] for r in results)} changes applied, "
          f"{sum(r['skipped'] for r in results)} re-read transactions skipped, {watch.samples} slot samples")
