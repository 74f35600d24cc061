"""Checkpoints on a real Airflow 3.3.2: scheduler, API server, dag-processor, LocalExecutor, real signals."""

from __future__ import annotations

import signal
import time

import pytest

from airflow_resilience.attempt import HEAD_KEY, doc_key

pytestmark = pytest.mark.airflow

DAG = "ckpt_steps"


def kill_runner_after_item(af, marks, run_id: str, try_number: int, item: int) -> int:
    """SIGKILL the task runner once ``item`` has finished in ``try_number``; returns the killed PID."""
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == try_number and e["i"] >= item)
    af.wait_for_task(DAG, run_id, "work", {"running"}, try_number=try_number)
    return af.signal_runner(DAG, run_id, "work", signal.SIGKILL)


@pytest.mark.sqlite_too
def test_sixty_steps_killed_twice_resume_after_last_finished_step(airflow_env, marks):
    af = airflow_env
    run_id = af.trigger(DAG, conf={"marks": str(marks.path), "steps": 60, "delay": 0.2})
    kill_runner_after_item(af, marks, run_id, 1, 20)
    kill_runner_after_item(af, marks, run_id, 2, 40)
    assert af.wait_for_run(DAG, run_id, timeout=240) == "success"

    tries = af.try_history(DAG, run_id, "work")
    assert [t.try_number for t in tries] == [1, 2, 3]
    assert tries[-1].state == "success"

    ended = {t: {e["i"] for e in marks.of("item-end", t)} for t in (1, 2, 3)}
    started = {t: [e["i"] for e in marks.of("item-start", t)] for t in (1, 2, 3)}
    assert set().union(*ended.values()) == set(range(60))
    for prev, nxt in ((1, 2), (2, 3)):
        last_finished = max(ended[prev])
        # the next attempt starts right after the last finished step...
        assert started[nxt][0] == last_finished + 1, (prev, nxt, started[nxt][:3], last_finished)
        # ...so no finished step is redone, and at most one step (the one in progress) is repeated
        assert not ended[prev] & set(started[nxt])
        assert len(set(started[prev]) & set(started[nxt])) <= 1
    assert len(marks.of("step-computed")) == 1
    starts = marks.of("attempt-start")
    assert [s["plan"] for s in starts] == ["fresh", "resume", "resume"]

    saved = af.state_store(DAG, run_id, "work")
    assert saved[HEAD_KEY]["try_number"] == 3
    assert saved[doc_key(3)]["loops"]["items"] == {"done": 60, "complete": True}
    assert {k for k in saved if k.startswith("resilience:checkpoint:")} == {HEAD_KEY, doc_key(3)}  # superseded dropped


@pytest.mark.parametrize("keep_on_clear", [False, True], ids=["clear-means-rerun", "opt-out-keeps"])
def test_clear_after_success(airflow_env, marks, keep_on_clear):
    af = airflow_env
    conf = {"marks": str(marks.path), "steps": 5, "delay": 0.01, "keep_on_clear": keep_on_clear}
    run_id = af.trigger(DAG, conf=conf)
    assert af.wait_for_run(DAG, run_id) == "success"
    af.clear(DAG, run_id, ["work"])
    af.wait_for_task(DAG, run_id, "work", {"success"}, try_number=2, timeout=120)
    assert af.wait_for_run(DAG, run_id) == "success"

    starts = marks.of("attempt-start")
    assert [s["t"] for s in starts] == [1, 2]
    # the successful try 1 is not taken for a silent death by try 2 (no infrastructure record)
    ledger = af.state_store(DAG, run_id, "work").get("resilience:ledger") or {"attempts": []}
    assert ledger["attempts"] == []
    if keep_on_clear:
        assert starts[1]["plan"] == "keep_after_clear"
        assert starts[1]["done"] == 5
        assert marks.of("item-start", 2) == []
        assert len(marks.of("step-computed")) == 1
    else:
        assert starts[1]["plan"] == "rerun_after_clear"
        assert starts[1]["done"] == 0
        assert [e["i"] for e in marks.of("item-end", 2)] == [0, 1, 2, 3, 4]
        assert len(marks.of("step-computed")) == 2
        assert starts[1]["generation"] == 1


@pytest.mark.sqlite_too
def test_stale_attempt_write_is_refused(airflow_env, marks):
    """Attempt 1 is frozen (SIGSTOP, like a VM pause) until the scheduler declares it lost and attempt 2
    has taken over; thawed, its next checkpoint write (synchronous) is refused and attempt 2's progress is
    intact."""
    _frozen_zombie(airflow_env, marks, write_behind=False)


def test_stale_attempt_background_write_is_refused(airflow_env, marks):
    """The same with write-behind: the zombie's background write is refused and never lands. The thawed
    zombie may be ended by its supervisor (the server says it is no longer running) before its main thread
    reaches the next loop boundary and raises the refusal, so either is accepted as its end; what must hold
    is the same: attempt 2's checkpoint intact, no document of attempt 1."""
    _frozen_zombie(airflow_env, marks, write_behind=True)


def _frozen_zombie(af, marks, *, write_behind: bool) -> None:
    import psutil

    dag = "ckpt_fencing"
    run_id = af.trigger(dag, conf={"marks": str(marks.path), "steps": 400, "write_behind": write_behind})
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 10)
    procs = af.task_processes(dag, run_id, "work")
    os_kill = __import__("os").kill
    os_kill(procs.runner, signal.SIGSTOP)
    os_kill(procs.supervisor, signal.SIGSTOP)
    try:
        marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 2 and e["i"] >= 60, timeout=150)
        head = af.state_store(dag, run_id, "work")[HEAD_KEY]
        assert head["try_number"] == 2
    finally:
        os_kill(procs.runner, signal.SIGCONT)  # its next write request waits in the supervisor's socket
        time.sleep(0.5)
        os_kill(procs.supervisor, signal.SIGCONT)
    if write_behind:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and psutil.pid_exists(procs.runner) and not marks.of("refused", 1):
            time.sleep(0.2)
        assert marks.of("refused", 1) or not psutil.pid_exists(procs.runner), "the thawed zombie neither refused nor ended"
        if marks.of("refused", 1):
            assert "no longer the current attempt" in marks.of("refused", 1)[0]["error"]
    else:
        refused = marks.wait_for(lambda e: e["ev"] == "refused" and e["t"] == 1, timeout=60)
        assert "no longer the current attempt" in refused["error"]
    assert af.wait_for_run(dag, run_id, timeout=120) == "success"
    saved = af.state_store(dag, run_id, "work")
    assert saved[HEAD_KEY]["try_number"] == 2
    assert saved[doc_key(2)]["loops"]["items"] == {"done": 400, "complete": True}
    assert doc_key(1) not in saved  # the zombie's write did not land


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("non_json", "checkpoint key 'when': datetime at $ is not JSON-serializable"),
        ("too_large", "checkpoint key 'blob': saving it would make this task's checkpoint"),
    ],
)
def test_bad_values_fail_the_task_without_retry_and_keep_checkpoint(airflow_env, mode, message):
    af = airflow_env
    dag = "ckpt_bad_input"
    run_id = af.trigger(dag, conf={"mode": mode})
    assert af.wait_for_run(dag, run_id) == "failed"
    ti = af.task_instance(dag, run_id, "work")
    assert (ti.state, ti.try_number) == ("failed", 1)  # non-retryable: retries=2 not spent
    assert message in af.task_log(dag, run_id, "work", 1)
    assert af.state_store(dag, run_id, "work")[doc_key(1)]["values"] == {"small": 1}


def test_corrupt_saved_state_fails_loudly_and_is_left_untouched(airflow_env):
    af = airflow_env
    dag = "ckpt_bad_input"
    run_id = af.trigger(dag, conf={"mode": "corrupt"})
    af.wait_for_task(dag, run_id, "work", {"up_for_retry"}, try_number=1)
    damaged = '{"format": 1, "try_number": "one"}'
    af.write_state_store_raw(dag, run_id, "work", HEAD_KEY, damaged)
    assert af.wait_for_run(dag, run_id) == "failed"
    ti = af.task_instance(dag, run_id, "work")
    assert (ti.state, ti.try_number) == ("failed", 2)  # the corrupt state is not retried a third time
    log = af.task_log(dag, run_id, "work", 2)
    assert "saved state key 'resilience:checkpoint:head' is damaged" in log
    rows = af.sql("SELECT value FROM task_state_store WHERE run_id = :r AND key = :k", r=run_id, k=HEAD_KEY)
    assert rows == [(damaged,)]
    assert af.state_store(dag, run_id, "work")[doc_key(1)]["values"] == {"small": 1}


def test_cli_show_and_reset(airflow_env, marks):
    import json

    af = airflow_env
    run_id = af.trigger(DAG, conf={"marks": str(marks.path), "steps": 3, "delay": 0.01})
    assert af.wait_for_run(DAG, run_id) == "success"
    shown = json.loads(af.airflow("resilience", "checkpoint", "show", DAG, run_id, "work").stdout)
    assert shown[HEAD_KEY]["try_number"] == 1
    assert shown[doc_key(1)]["loops"]["items"]["done"] == 3

    out = af.airflow("resilience", "checkpoint", "reset", DAG, run_id, "work", "--yes").stdout
    assert "deleted 2 checkpoint keys" in out
    left = af.state_store(DAG, run_id, "work")
    assert not [k for k in left if k.startswith("resilience:checkpoint:")]
    assert "resilience:ledger" not in left or left["resilience:ledger"]["attempts"] == []  # history is kept
    audit = af.sql("SELECT extra FROM log WHERE event = 'cli_resilience_checkpoint_reset' AND run_id = :r", r=run_id)
    assert sorted(json.loads(audit[0][0])["deleted_keys"]) == sorted([HEAD_KEY, doc_key(1)])
    missing = af.airflow("resilience", "checkpoint", "show", DAG, run_id, "work", check=False)
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr


@pytest.mark.sqlite_too
def test_batched_progress_is_written_on_sigterm_and_at_task_end(airflow_env, marks):
    """With writes batched (flush_interval=1h: never by time), a SIGTERM drains the task: what finished is
    written, the task instance is handed back (a new try from the infrastructure budget, no retry spent)
    and the next attempt starts right after the last finished item; and the task-end listener writes what
    is pending when it succeeds."""
    af = airflow_env
    conf = {"marks": str(marks.path), "steps": 40, "delay": 0.2, "flush_interval": 3600}
    run_id = af.trigger(DAG, conf=conf)
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 10)
    af.wait_for_task(DAG, run_id, "work", {"running"}, try_number=1)
    assert af.state_store(DAG, run_id, "work")[doc_key(1)]["loops"] == {}  # nothing written by time
    first_pid = af.signal_runner(DAG, run_id, "work", signal.SIGTERM)
    assert af.wait_for_run(DAG, run_id, timeout=180) == "success"

    ended_first = {e["i"] for e in marks.of("item-end") if e["pid"] == first_pid}
    started_next = [e["i"] for e in marks.of("item-start") if e["pid"] != first_pid]
    assert started_next[0] == max(ended_first) + 1  # nothing finished is lost, nothing finished redone
    assert not ended_first & set(started_next)
    ti = af.task_instance(DAG, run_id, "work")
    assert ti.try_number == 2  # drained: a new try from the infrastructure budget
    saved = af.state_store(DAG, run_id, "work")
    assert [a["verdict"] for a in saved["resilience:ledger"]["attempts"]] == ["grant"]  # retries untouched
    assert saved[doc_key(2)]["values"]["finished_by"] == 2
    assert saved[doc_key(2)]["loops"]["items"] == {"done": 40, "complete": True}


def test_write_behind_hard_kill_redoes_at_most_two_items_and_shares_the_supervisor_channel(airflow_env, marks):
    """Write-behind (the default) on a fast loop, each item also reading the state store from the main thread
    while the writer thread writes: the runner is SIGKILLed twice mid-loop; each next attempt redoes at most
    two items of the killed one (the item whose write was in flight and the one computed meanwhile), skips
    nothing, and no request of either thread ever got the other's answer."""
    af = airflow_env
    dag = "ckpt_write_behind"
    run_id = af.trigger(dag, conf={"marks": str(marks.path), "steps": 400, "delay": 0.002})
    killed = []
    for try_number, item in ((1, 60), (2, 150)):
        marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == try_number and e["i"] >= item)
        af.wait_for_task(dag, run_id, "work", {"running"}, try_number=try_number)
        killed.append(af.signal_runner(dag, run_id, "work", signal.SIGKILL))
    assert af.wait_for_run(dag, run_id, timeout=240) == "success"

    starts = marks.of("attempt-start")
    assert [s["write_behind"] for s in starts] == [True, True, True]
    by_pid = {}
    for e in marks.read():
        if e["ev"] in ("item-start", "item-end"):
            by_pid.setdefault(e["pid"], {"item-start": [], "item-end": []})[e["ev"]].append(e["i"])
    pids = list(by_pid)  # in order of the first mark: the killed runners first
    assert pids[:2] == killed
    for prev, nxt in zip(pids, pids[1:]):
        started_prev, ended_prev = by_pid[prev]["item-start"], set(by_pid[prev]["item-end"])
        resume_at = by_pid[nxt]["item-start"][0]
        assert resume_at <= max(ended_prev) + 1  # nothing finished-and-unsaved is skipped
        redone = [i for i in started_prev if i >= resume_at]
        assert len(redone) <= 2, (resume_at, started_prev[-4:], sorted(ended_prev)[-4:])
    assert marks.of("probe-wrong") == []
    done = marks.of("done")
    assert len(done) == 1 and done[0]["wrong"] == 0
    saved = af.state_store(dag, run_id, "work")
    assert saved[doc_key(3)]["loops"]["items"] == {"done": 400, "complete": True}
