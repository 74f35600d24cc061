"""The broker view of Celery workers: who is alive, who is lost, what each held (table tests)."""

from __future__ import annotations

import pytest

from airflow_resilience.signals.celery import WorkerRoster, task_ids


def tasks(*ids: str) -> list[dict]:
    return [{"id": i, "name": "execute_workload"} for i in ids]


def test_task_ids_ignore_malformed_entries():
    assert task_ids([{"id": "a"}, {"name": "no id"}, "junk", {"id": ""}]) == frozenset({"a"})
    assert task_ids(None) == frozenset()


@pytest.mark.parametrize(
    "rounds, now, lost_after, expected",
    [
        # answered at 0, silent since: lost at 3 s with what it held
        ([(0, {"w1": tasks("a")}, {"w1": tasks("b")})], 3.0, 3.0, [("w1", {"a"}, {"b"})]),
        # not yet
        ([(0, {"w1": tasks("a")}, {"w1": []})], 2.9, 3.0, []),
        # answered again at 2: the clock restarts
        ([(0, {"w1": tasks("a")}, {"w1": []}), (2, {"w1": []}, {"w1": []})], 4.0, 3.0, []),
        # the last answer counts: the task it had finished is not reported
        ([(0, {"w1": tasks("a")}, {"w1": []}), (2, {"w1": []}, {"w1": []})], 5.0, 3.0, [("w1", set(), set())]),
        # nobody answered a round (None): nothing changes
        ([(0, {"w1": tasks("a")}, {"w1": []}), (1, None, None)], 3.5, 3.0, [("w1", {"a"}, set())]),
        # two workers, one silent
        ([(0, {"w1": tasks("a"), "w2": tasks("b")}, {}), (3, {"w2": tasks("b")}, {})], 3.0, 3.0, [("w1", {"a"}, set())]),
        # a worker that answered only active keeps its reserved list from before
        ([(0, {"w1": []}, {"w1": tasks("r")}), (1, {"w1": []}, {})], 4.0, 3.0, [("w1", set(), {"r"})]),
    ],
)
def test_lost_workers(rounds, now, lost_after, expected):
    roster = WorkerRoster(lost_after)
    for at, active, reserved in rounds:
        roster.observe(at, active, reserved)
    got = [(w.hostname, set(w.active), set(w.reserved)) for w in roster.lost(now)]
    assert got == expected


def test_a_lost_worker_is_reported_once_and_comes_back_when_it_answers():
    roster = WorkerRoster(3.0)
    roster.observe(0, {"w1": tasks("a")}, {})
    (lost,) = roster.lost(5.0)
    assert lost.silent_for == 5.0 and "5.0s" in lost.note() and "1 running" in lost.note()
    assert roster.lost(9.0) == []
    roster.observe(10, {"w1": []}, {})
    assert roster.holder_of("a") is None and "w1" in roster.workers


def test_holder_of():
    roster = WorkerRoster(3.0)
    roster.observe(0, {"w1": tasks("a")}, {"w2": tasks("b")})
    assert roster.holder_of("a") == "w1" and roster.holder_of("b") == "w2" and roster.holder_of("c") is None
