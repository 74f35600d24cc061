"""Change data capture from a PostgreSQL logical replication slot, acknowledged only on success.

::

    from airflow_resilience.providers.postgres import PostgresSlotSource

    @task
    def replicate():
        with PostgresSlotSource("orders_slot", postgres_conn_id="orders_db") as cdc:
            for txn in cdc.transactions():   # peeked, not consumed: the slot does not move
                apply(txn)                   # idempotent by txn.commit_lsn (see the incremental-loads docs)
            cdc.acknowledge()                # stages the last commit LSN; the slot moves when this TI succeeds

The slot's confirmed LSN is the watermark, held by the source: it is advanced with
``pg_replication_slot_advance`` only once Airflow has recorded the task instance's success, so it never
passes a change that was not published. A :class:`~airflow_resilience.Watermark` named
``postgres-slot:<conn id>:<slot>`` keeps one reader at a time (a slot serves one reader) and records the
history; if the task dies between its recorded success and the slot advance, the next reader finds the
committed watermark ahead of the slot and moves the slot there first.

Uses the Postgres provider's ``PostgresHook`` (``apache-airflow-providers-postgres``). The source database
needs ``wal_level = logical`` and a free replication slot. Output plugin: the built-in ``test_decoding``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from airflow_resilience import watermark as wm_core
from airflow_resilience.errors import WatermarkError
from airflow_resilience.logical_decoding import Transaction, parse_test_decoding
from airflow_resilience.watermark import Watermark, int_to_lsn, lsn_to_int

PEEK = (
    "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, "
    "'include-xids', '1', 'skip-empty-xacts', '1')"
)


class PostgresSlotSource:
    """Read committed transactions from a logical replication slot; move the slot only on success.

    :param slot: replication slot name (created with ``test_decoding`` when absent and ``create_slot``).
    :param postgres_conn_id: Airflow connection of the source database.
    :param max_changes: at most about this many changes per :meth:`transactions` call (whole transactions).
    :param connect: a function returning a DB-API connection, instead of the hook (tests, benchmarks).
    :param on_task_end: where to register the slot advance; defaults to the running task's end.
    """

    def __init__(
        self,
        slot: str,
        *,
        postgres_conn_id: str = "postgres_default",
        max_changes: int = 1000,
        create_slot: bool = True,
        wait_timeout: float | None = None,
        connect: Callable[[], Any] | None = None,
        watermark_backend: Any = None,
        on_task_end: Callable[[Callable[[bool], None]], None] | None = None,
    ) -> None:
        self.slot = slot
        self.postgres_conn_id = postgres_conn_id
        self.max_changes = max_changes
        self.create_slot = create_slot
        self._connect_fn = connect
        self._on_task_end = on_task_end or wm_core.on_task_end
        self.watermark = Watermark(
            f"postgres-slot:{postgres_conn_id}:{slot}", wait_timeout=wait_timeout, backend=watermark_backend
        )
        self._conn: Any = None
        self._last: Transaction | None = None
        self._registered = False
        self.rolled_forward_to: str | None = None

    # -- connection
    def _connect(self) -> Any:
        if self._connect_fn is not None:
            conn = self._connect_fn()
        else:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            conn = PostgresHook(postgres_conn_id=self.postgres_conn_id).get_conn()
        conn.autocommit = True
        return conn

    def _query(self, sql: str, *params: Any, conn: Any = None) -> list[tuple]:
        cur = (conn or self._conn).cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
        finally:
            cur.close()

    # -- lifecycle
    def __enter__(self) -> PostgresSlotSource:
        self.watermark.__enter__()
        try:
            self._conn = self._connect()
            self._ensure_slot()
            committed = self.watermark.value
            if committed is not None and lsn_to_int(committed) > lsn_to_int(self.confirmed_lsn()):
                # A reader succeeded, but died before it could move the slot: finish its work first.
                self._advance(committed, self._conn)
                self.rolled_forward_to = committed
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        self.watermark.__exit__(exc_type, exc, tb)

    def _ensure_slot(self) -> None:
        found = self._query("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = %s", self.slot)
        if found:
            if found[0][0] != "test_decoding":
                raise WatermarkError(
                    f"replication slot {self.slot!r} uses output plugin {found[0][0]!r}; PostgresSlotSource reads "
                    "test_decoding output: create a slot with pg_create_logical_replication_slot(name, 'test_decoding')"
                )
            return
        if not self.create_slot:
            raise WatermarkError(f"replication slot {self.slot!r} does not exist (create_slot=False)")
        self._query("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", self.slot)

    # -- reading
    def confirmed_lsn(self) -> str:
        """The slot's confirmed LSN: everything up to it was acknowledged."""
        rows = self._query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", self.slot)
        if not rows:
            raise WatermarkError(f"replication slot {self.slot!r} disappeared")
        return rows[0][0]

    def transactions(self, max_changes: int | None = None) -> list[Transaction]:
        """The next committed transactions after the slot's confirmed LSN (peeked: the slot does not move)."""
        if self._conn is None:
            raise WatermarkError("PostgresSlotSource is not open: use 'with PostgresSlotSource(...) as cdc:'")
        rows = self._query(PEEK, self.slot, max_changes or self.max_changes)
        txns = parse_test_decoding(rows)
        if txns:
            self._last = txns[-1]
        return txns

    # -- acknowledging
    def acknowledge(self, upto: Transaction | str | None = None) -> str | None:
        """Stage the slot's next position (default: the last transaction read). Returns the LSN staged.

        Call it after the transactions up to there are published. Nothing moves before the task instance
        ends in success; then the slot is advanced there and the watermark committed.
        """
        if upto is None:
            if self._last is None:
                return None
            upto = self._last
        lsn = upto.commit_lsn if isinstance(upto, Transaction) else str(upto)
        lsn = int_to_lsn(lsn_to_int(lsn))  # normalised, so the watermark compares LSNs, not text
        self.watermark.advance(lsn)
        if not self._registered:
            self._on_task_end(self._at_task_end)
            self._registered = True
        return lsn

    def _at_task_end(self, succeeded: bool) -> None:
        lsn = self.watermark.staged
        if not succeeded or lsn is None:
            return
        conn = self._connect()
        try:
            self._advance(lsn, conn)
        finally:
            conn.close()

    def _advance(self, lsn: str, conn: Any) -> None:
        confirmed = self._query(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", self.slot, conn=conn
        )[0][0]
        if lsn_to_int(lsn) > lsn_to_int(confirmed):
            self._query("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", self.slot, lsn, conn=conn)
