"""Watermarks on a real Airflow 3.3.2: commit on success, kills and errors mid-publish, concurrent runs,
a fenced zombie holder, the operators' CLI and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.airflow

DAG = "wm_incremental"
TASK = "load"


class Source:
    """The SQLite source/target the DAG reads and publishes to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._db() as db:
            db.execute("CREATE TABLE source (id INTEGER PRIMARY KEY, payload TEXT)")
            db.execute("CREATE TABLE target (id INTEGER PRIMARY KEY, payload TEXT, run_id TEXT)")
            db.execute("CREATE TABLE publish_log (id INTEGER, run_id TEXT, try INTEGER)")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def add(self, first: int, last: int) -> None:
        with self._db() as db:
            db.executemany("INSERT INTO source VALUES (?, ?)", [(i, f"row-{i}") for i in range(first, last + 1)])

    def target_ids(self) -> list[int]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT id FROM target ORDER BY id")]

    def publishes(self) -> list[tuple[int, str, int]]:
        with self._db() as db:
            return list(db.execute("SELECT id, run_id, try FROM publish_log ORDER BY rowid"))


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path / "source.db")


@pytest.fixture
def name() -> str:
    return f"orders.{uuid.uuid4().hex[:8]}"


def wm_cli(af, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return af.airflow("resilience", "watermark", *args, check=check, timeout=120)


def committed(af, name: str) -> dict:
    return json.loads(wm_cli(af, "get", name, "--history", "20").stdout)


def conf(source: Source, marks, name: str, **extra) -> dict:
    return {"db": str(source.path), "marks": str(marks.path), "name": name, **extra}


@pytest.mark.parametrize("disruption", ["sigkill-runner", "exception"])
def test_disrupted_publish_rereads_old_value_and_next_run_loads_only_new_rows(airflow_env, marks, source, name, disruption):
    af = airflow_env
    source.add(1, 20)
    extra = {"delay": 0.15} if disruption == "sigkill-runner" else {"fail_at": 5}
    run1 = af.trigger(DAG, conf=conf(source, marks, name, **extra))
    if disruption == "sigkill-runner":
        marks.wait_for(lambda e: e["ev"] == "published" and e["t"] == 1 and e["id"] >= 5)
        af.wait_for_task(DAG, run1, TASK, {"running"}, try_number=1)
        af.signal_runner(DAG, run1, TASK, signal.SIGKILL)
    assert af.wait_for_run(DAG, run1, timeout=180) == "success"

    reads = [(e["t"], e["since"]) for e in marks.of("read") if e["run"] == run1]
    assert reads == [(1, 0), (2, 0)], reads  # the retry read the old value again: no gap
    try1 = [i for i, r, t in source.publishes() if r == run1 and t == 1]
    try2 = [i for i, r, t in source.publishes() if r == run1 and t == 2]
    assert 5 <= len(try1) < 20 and try2 == list(range(1, 21))  # republished from the old value
    got = committed(af, name)
    assert got["value"] == 20 and got["version"] == 1 and got["holder"] is None
    assert got["committed_by"]["run_id"] == run1 and got["committed_by"]["try_number"] == 2
    actions = [h["action"] for h in got["history"]]
    assert actions == ["commit", "discarded"], got["history"]  # newest first
    discarded = got["history"][1]
    assert discarded["holder"]["try_number"] == 1, discarded
    if disruption == "exception":
        assert discarded["detail"] == "released by the holder", discarded  # try 1 released what it staged
    else:
        assert discarded["detail"] == "the holder did not succeed", discarded  # try 2 found try 1 dead

    source.add(21, 30)
    run2 = af.trigger(DAG, conf=conf(source, marks, name))
    assert af.wait_for_run(DAG, run2, timeout=120) == "success"
    assert [e["since"] for e in marks.of("read") if e["run"] == run2] == [20]
    assert [i for i, r, _ in source.publishes() if r == run2] == list(range(21, 31))
    assert source.target_ids() == list(range(1, 31))
    assert committed(af, name)["value"] == 30
    tries = af.try_history(DAG, run1, TASK)
    assert [t.state for t in tries][-1] == "success"


@pytest.mark.sqlite_too
def test_two_concurrent_runs_split_forty_rows_without_overlap_or_gap(airflow_env, marks, source, name):
    af = airflow_env
    source.add(1, 40)
    runs = [af.trigger(DAG, conf=conf(source, marks, name, batch=20, delay=0.05)) for _ in range(2)]
    for run in runs:
        assert af.wait_for_run(DAG, run, timeout=180) == "success"

    publishes = source.publishes()
    ids = [i for i, _, _ in publishes]
    assert sorted(ids) == list(range(1, 41))  # every row exactly once, no gap
    by_run = {run: [i for i, r, _ in publishes if r == run] for run in runs}
    reads = {e["run"]: e for e in marks.of("read")}
    first, second = sorted(runs, key=lambda r: reads[r]["since"])
    assert reads[first]["since"] == 0 and by_run[first] == list(range(1, 21))
    assert reads[second]["since"] == 20 and by_run[second] == list(range(21, 41))  # read the first's commit
    assert reads[second]["waited"] > 0  # it waited for the holder rather than reading the same value
    # the second read only after the first had finished publishing
    last_of_first = max(e["at"] for e in marks.of("published") if e["run"] == first)
    assert reads[second]["at"] > last_of_first
    got = committed(af, name)
    assert got["value"] == 40 and got["version"] == 2
    assert [h["holder"]["run_id"] for h in got["history"]] == [second, first]


@pytest.mark.sqlite_too
def test_dead_holder_is_fenced_and_its_late_writes_are_refused(airflow_env, marks, source, name, tmp_path):
    """Try 1 holds the name and is frozen (SIGSTOP of runner and supervisor, like a VM pause or a partition)
    until the scheduler gives it up; try 2 takes the name over and commits. Thawed, try 1 tries to stage and
    commit late, straight to the API server: both refused, the committed value does not move."""
    af = airflow_env
    source.add(1, 10)
    go = tmp_path / "go"
    run = af.trigger(DAG, conf=conf(source, marks, name, mode="hold", go=str(go)))
    marks.wait_for(lambda e: e["ev"] == "staged" and e["t"] == 1)
    procs = af.task_processes(DAG, run, TASK)
    os.kill(procs.runner, signal.SIGSTOP)
    os.kill(procs.supervisor, signal.SIGSTOP)
    try:
        assert af.wait_for_run(DAG, run, timeout=180) == "success"
        got = committed(af, name)
        assert got["value"] == 10 and got["committed_by"]["try_number"] == 2
        go.write_text("go")
    finally:
        os.kill(procs.runner, signal.SIGCONT)  # its late requests go to the API server, not the supervisor
    try:
        late = {w: marks.wait_for(lambda e, w=w: e["ev"] == "late" and e["what"] == w, timeout=60) for w in ("stage", "commit")}
    finally:
        go.write_text("go")
        os.kill(procs.supervisor, signal.SIGCONT)  # learns its try is over and ends the runner
    assert late["stage"]["outcome"] == "WatermarkFencedError", late
    assert late["commit"]["outcome"] == "WatermarkFencedError", late
    assert "not a current try" in late["commit"]["error"]
    after = committed(af, name)
    assert after["value"] == 10 and after["version"] == got["version"]  # nothing moved
    assert [h["action"] for h in after["history"]] == ["commit", "discarded"]
    try:
        psutil.Process(procs.runner).wait(timeout=60)
    except psutil.NoSuchProcess:
        pass


def test_held_past_timeout_names_the_holder(airflow_env, marks, source, name, tmp_path):
    af = airflow_env
    source.add(1, 5)
    go = tmp_path / "go"
    holder = af.trigger(DAG, conf=conf(source, marks, name, mode="hold", go=str(go)))
    marks.wait_for(lambda e: e["ev"] == "staged" and e["run"] == holder)
    try:
        waiter = af.trigger(DAG, conf=conf(source, marks, name, wait_timeout=3))
        assert af.wait_for_run(DAG, waiter, timeout=120) == "failed"
        log = af.task_log(DAG, waiter, TASK, 2)
        assert "WatermarkHeldError" in log
        assert f"is still held by dag '{DAG}', run '{holder}', task '{TASK}', try 1" in log
        assert "wait_timeout=3s" in log
        # while held, an operator's set is refused (naming the holder) unless forced
        refused = wm_cli(af, "set", name, "99", check=False)
        assert refused.returncode == 1 and f"run '{holder}'" in refused.stderr and "--force" in refused.stderr
    finally:
        go.write_text("go")
    assert af.wait_for_run(DAG, holder, timeout=120) == "success"


@pytest.mark.parametrize(
    "mode, message",
    [
        ("backwards", "is before the committed value"),
        ("not-json", "DateTime at $.at is not JSON-serializable"),
    ],
)
def test_bad_advance_fails_the_task_without_retry_and_keeps_the_value(airflow_env, marks, source, name, mode, message):
    af = airflow_env
    wm_cli(af, "set", name, "3")
    run = af.trigger(DAG, conf=conf(source, marks, name, mode=mode))
    assert af.wait_for_run(DAG, run, timeout=120) == "failed"
    assert len(af.try_history(DAG, run, TASK)) == 1  # non-retryable: retries=1 not spent
    assert message in af.task_log(DAG, run, TASK, 1)
    got = committed(af, name)
    assert got["value"] == 3 and got["holder"] is None


def test_operator_commands_are_audited_and_refuse_bad_input(airflow_env, name):
    af = airflow_env
    unknown = wm_cli(af, "get", f"{name}.missing", check=False)
    assert unknown.returncode == 1 and "no watermark named" in unknown.stderr and "watermark list" in unknown.stderr
    not_json = wm_cli(af, "set", name, "2024-01-01", check=False)
    assert not_json.returncode == 1 and "is not JSON" in not_json.stderr
    assert wm_cli(af, "set", name, '"2024-01-02T00:00:00+00:00"').returncode == 0
    back = wm_cli(af, "set", name, '"2024-01-01T00:00:00+00:00"', check=False)
    assert back.returncode == 1 and "--backwards" in back.stderr
    wm_cli(af, "set", name, '"2024-01-01T00:00:00+00:00"', "--backwards")
    listed = json.loads(wm_cli(af, "list", "-o", "json").stdout)
    assert {"name": name, "value": "2024-01-01T00:00:00+00:00", "version": 2}.items() <= next(
        r for r in listed if r["name"] == name
    ).items()
    wm_cli(af, "reset", name, "--yes")
    got = committed(af, name)
    assert got["committed"] is False and got["value"] is None
    assert [h["action"] for h in got["history"]] == ["reset", "set", "set"]
    audit = af.sql("SELECT event, extra FROM log WHERE event LIKE 'cli_resilience_watermark_%' ORDER BY id")
    mine = [(event, json.loads(extra)) for event, extra in audit if json.loads(extra)["name"] == name]
    assert [e for e, _ in mine] == ["cli_resilience_watermark_set"] * 2 + ["cli_resilience_watermark_reset"]
    assert mine[1][1]["backwards"] is True and mine[2][1]["previous"] == "2024-01-01T00:00:00+00:00"


def test_user_mark_success_on_a_running_holder_discards_what_it_staged(airflow_env, marks, source, name):
    """A user marks the holder success from the UI while it is still publishing: the task instance is
    success, but what its block staged is discarded, never rolled forward (its rows may not all be
    published); the next run reads the old value and publishes the rest."""
    af = airflow_env
    source.add(1, 10)
    conf = {"db": str(source.path), "marks": str(marks.path), "name": name, "delay": 1.0}
    run_id = af.trigger(DAG, conf=conf)
    marks.wait_for(lambda e: e["ev"] == "published" and e["run"] == run_id and e["id"] >= 2)
    af.set_task_state(DAG, run_id, TASK, "success")
    assert af.wait_for_run(DAG, run_id, timeout=120) == "success"
    shown = committed(af, name)
    assert shown["committed"] is False and not shown["holder"]  # nothing rolled forward, the hold ended
    assert any(h["action"] == "discarded" and "a user changed the holder's state" in h["detail"] for h in shown["history"])
    second = af.trigger(DAG, conf={**conf, "delay": 0})
    assert af.wait_for_run(DAG, second, timeout=120) == "success"
    reads = [e for e in marks.read() if e["ev"] == "read" and e["run"] == second]
    assert reads[0]["since"] == 0  # the old value: the rows the first run may not have published are read again
    assert source.target_ids() == list(range(1, 11))
