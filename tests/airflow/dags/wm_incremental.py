"""Acceptance DAG: an incremental load with a Watermark.

Source and target are tables of a SQLite file named by the run conf ``db``: ``source(id, payload)`` is read
after the watermark, ``target(id, payload, run_id)`` is upserted (an idempotent publish), and every publish
is also appended to ``publish_log`` so tests can count how often each row was published and by whom.

Conf: ``db``, ``marks``, ``name`` (watermark name), ``batch`` (rows per run), ``delay`` (seconds per row),
``fail_at`` (raise after that many rows on try 1), ``mode`` ("load", "hold" for the fencing test,
"backwards", "not-json"), ``wait_timeout``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pendulum

from airflow.sdk import dag, get_current_context, task
from resilience_marks import mark

from airflow_resilience import Watermark


def _db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"], max_active_runs=4)
def wm_incremental():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def load():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf or {}
        run_id = ctx["run_id"]
        try_number = ctx["ti"].try_number
        marks = conf["marks"]
        mode = conf.get("mode", "load")
        delay = float(conf.get("delay", 0.0))
        fail_at = conf.get("fail_at")
        wait_timeout = conf.get("wait_timeout")

        mark(marks, ev="open", run=run_id, t=try_number, pid=os.getpid())
        with Watermark(conf["name"], default=0, wait_timeout=wait_timeout, poll_interval=0.2) as wm:
            since = wm.value
            mark(marks, ev="read", run=run_id, t=try_number, since=since, waited=wm.waited, pid=os.getpid())
            if mode == "backwards":
                wm.advance(since - 1)
            if mode == "not-json":
                wm.advance({"at": pendulum.now("UTC")})
            db = _db(conf["db"])
            rows = db.execute(
                "SELECT id, payload FROM source WHERE id > ? ORDER BY id LIMIT ?", (since, int(conf.get("batch", 1000)))
            ).fetchall()
            if rows:
                wm.advance(rows[-1][0])
            mark(marks, ev="staged", run=run_id, t=try_number, upto=wm.staged)
            if mode == "hold" and try_number == 1:
                # The fencing test: stay in the block until the test says go (by then this attempt may be a
                # zombie whose supervisor was killed), then try to write late and report what happened.
                go = Path(conf["go"])
                while not go.exists():
                    time.sleep(0.1)
                for what, call in (("stage", lambda: wm.advance(10_000)), ("commit", lambda: wm._end(True))):
                    try:
                        call()
                        mark(marks, ev="late", what=what, run=run_id, t=try_number, outcome="accepted")
                    except Exception as exc:
                        mark(marks, ev="late", what=what, run=run_id, t=try_number, outcome=type(exc).__name__, error=str(exc))
                return {"since": since}
            for i, (row_id, payload) in enumerate(rows, start=1):
                db.execute(
                    "INSERT INTO target (id, payload, run_id) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET payload = excluded.payload, run_id = excluded.run_id",
                    (row_id, payload, run_id),
                )
                db.execute("INSERT INTO publish_log (id, run_id, try) VALUES (?, ?, ?)", (row_id, run_id, try_number))
                mark(marks, ev="published", run=run_id, t=try_number, id=row_id, pid=os.getpid())
                if fail_at is not None and try_number == 1 and i == int(fail_at):
                    raise RuntimeError(f"publish failed after {i} rows")
                time.sleep(delay)
            db.close()
        mark(marks, ev="done", run=run_id, t=try_number, since=since, upto=rows[-1][0] if rows else since)
        return {"since": since, "upto": rows[-1][0] if rows else since}

    load()


wm_incremental()
