"""The broker view of Celery workers: who is alive, who is lost, what each held (table tests)."""

from __future__ import annotations

import pytest

from airflow_resilience.signals.celery import (
    IN_LAST_ANSWER,
    STARTED_THERE,
    LostWorker,
    WorkerRoster,
    lost_task_ids,
    started_on,
    task_ids,
)


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


def test_held_is_what_the_known_workers_last_named():
    roster = WorkerRoster(3.0)
    roster.observe(0, {"w1": tasks("a"), "w2": []}, {"w2": tasks("b")})
    roster.observe(2, {"w2": []}, {"w2": []})  # w1 did not answer: its last answer still counts
    assert roster.held() == frozenset({"a"})
    roster.lost(3.0)  # w1 is lost: what it held is no longer held by a known worker
    assert roster.held() == frozenset()


LOST = "worker-a@node1"


def started(hostname, pid=4242):
    """A result-backend meta as ``app.backend.get_task_meta`` returns it while the task runs."""
    return {"task_id": "x", "status": "STARTED", "result": {"pid": pid, "hostname": hostname}, "traceback": None}


def meta(status, result=None):
    return {"task_id": "x", "status": status, "result": result, "traceback": None, "date_done": None}


@pytest.mark.parametrize(
    "active, reserved, claimed, unclaimed, metas, expected",
    [
        # the lost worker's own last answer: running there / taken but not started
        ({"a"}, {"r"}, set(), [], {}, {"a": IN_LAST_ANSWER, "r": IN_LAST_ANSWER}),
        # another worker holding the same ids now: a reserved one is left alone; an active one was running on
        # the lost worker (the other's copy is a redelivery after the visibility timeout, which the
        # redelivery guard never runs), so it is handed back
        ({"a"}, {"r"}, {"a", "r"}, [], {}, {"a": IN_LAST_ANSWER}),
        # a reserved one that the backend says started on another worker (a redelivery it took): no action
        (set(), {"r"}, set(), [], {"r": started("worker-b@node2")}, {}),
        # a reserved one that started on the lost worker after its last answer, or whose meta is unreadable
        # or pending: its own answer is the evidence
        (set(), {"r"}, set(), [], {"r": started(LOST)}, {"r": IN_LAST_ANSWER}),
        (set(), {"r"}, set(), [], {"r": OSError("db down")}, {"r": IN_LAST_ANSWER}),
        (set(), {"r"}, set(), [], {"r": meta("PENDING")}, {"r": IN_LAST_ANSWER}),
        # unclaimed and STARTED on the lost worker: it died before a round saw it
        (set(), set(), set(), ["u"], {"u": started(LOST)}, {"u": STARTED_THERE}),
        # unclaimed and STARTED on another worker (one that has not answered yet, or never answers)
        (set(), set(), set(), ["u"], {"u": started("worker-quiet@node1")}, {}),
        # unclaimed, no meta at all / the meta could not be read
        (set(), set(), set(), ["u"], {}, {}),
        (set(), set(), set(), ["u"], {"u": None}, {}),
        (set(), set(), set(), ["u"], {"u": TimeoutError("backend")}, {}),
        # unclaimed, other states
        (set(), set(), set(), ["u"], {"u": meta("PENDING")}, {}),
        (set(), set(), set(), ["u"], {"u": meta("SUCCESS", None)}, {}),
        (set(), set(), set(), ["u"], {"u": meta("FAILURE", ValueError("x"))}, {}),
        (set(), set(), set(), ["u"], {"u": meta("RETRY", {"hostname": LOST})}, {}),
        # malformed STARTED metas
        (set(), set(), set(), ["u"], {"u": meta("STARTED", None)}, {}),
        (set(), set(), set(), ["u"], {"u": meta("STARTED", "worker-a@node1")}, {}),
        (set(), set(), set(), ["u"], {"u": meta("STARTED", {"pid": 1})}, {}),
        (set(), set(), set(), ["u"], {"u": "junk"}, {}),
        # worker names with @host: exactly the lost worker's node name, nothing less or more
        (set(), set(), set(), ["u"], {"u": started("worker-a@node2")}, {}),  # same name, another host
        (set(), set(), set(), ["u"], {"u": started("worker-b@node1")}, {}),  # same host, another worker
        (set(), set(), set(), ["u"], {"u": started("worker-a")}, {}),
        (set(), set(), set(), ["u"], {"u": started("node1")}, {}),
        (set(), set(), set(), ["u"], {"u": started("WORKER-A@node1")}, {}),
        (set(), set(), set(), ["u"], {"u": started("worker-a@node1.example.com")}, {}),
        # a claimed id is never handed back, whatever its meta says
        (set(), set(), {"u"}, ["u"], {"u": started(LOST)}, {}),
        # a mix: each id on its own evidence
        (
            {"a"},
            set(),
            {"c"},
            ["u1", "u2", "u3", "c"],
            {"u1": started(LOST), "u2": started("worker-b@node1"), "u3": RuntimeError(), "c": started(LOST)},
            {"a": IN_LAST_ANSWER, "u1": STARTED_THERE},
        ),
    ],
)
def test_lost_task_ids(active, reserved, claimed, unclaimed, metas, expected):
    lost = LostWorker(LOST, 0.0, 3.0, frozenset(active), frozenset(reserved))
    assert lost_task_ids(lost, claimed=claimed, unclaimed_running=unclaimed, metas=metas) == expected


def test_started_on():
    assert started_on(started("w@h")) == "w@h"
    assert started_on(meta("STARTED", {"hostname": ""})) is None
    assert started_on(meta("STARTED", {"hostname": 3})) is None
    assert started_on(ValueError()) is None and started_on(None) is None


class _Inspect:
    def __init__(self, answers):
        self.answers = answers

    def active(self):
        return self.answers.get("active")

    def reserved(self):
        return self.answers.get("reserved")


class _App:
    """Celery's control API as the watch uses it: one round's answers, set by the test."""

    def __init__(self):
        self.answers: dict = {}
        self.control = self

    def inspect(self, timeout):
        return _Inspect(self.answers)


def _watch():
    from airflow_resilience.airflow.celery_watch import CeleryWorkerWatch

    class Recording(CeleryWorkerWatch):
        def report(self, worker, claimed=(), asked_at=None, recheck=False):
            self.reports.append((worker.hostname, recheck, asked_at))
            return 0

    now = [0.0]
    app = _App()
    watch = Recording(3.0, 60.0, interval=1.0, app=app, clock=lambda: now[0])
    watch.reports = []
    return watch, app, now


def test_a_lost_worker_is_looked_at_again_until_the_heartbeat_timeout():
    watch, app, now = _watch()
    app.answers = {"active": {"w1@h": [], "w2@h": []}, "reserved": {"w1@h": [], "w2@h": []}}
    watch.check()
    app.answers = {"active": {"w2@h": []}, "reserved": {"w2@h": []}}  # w1 goes silent
    for t in range(1, 70):
        now[0] = float(t)
        watch.check()
    first = [r for r in watch.reports if not r[1]]
    again = [r for r in watch.reports if r[1]]
    assert [r[0] for r in first] == ["w1@h"]  # declared once, at 3 s
    assert again and all(r[0] == "w1@h" for r in again)
    assert all(r[2] == first[0][2] for r in again)  # the cut-off stays the declaration's time
    assert 9 <= len(again) <= 12  # every 5 s for the 60 s heartbeat timeout, then Airflow's own check
    assert watch.seen == 1


def test_a_worker_that_answers_again_is_not_looked_at_again():
    watch, app, now = _watch()
    app.answers = {"active": {"w1@h": []}, "reserved": {"w1@h": []}}
    watch.check()
    app.answers = {"active": {}, "reserved": {}}
    for t in (1, 2, 3, 4):
        now[0] = float(t)
        watch.check()
    assert [r[:2] for r in watch.reports] == [("w1@h", False)]
    app.answers = {"active": {"w1@h": []}, "reserved": {"w1@h": []}}  # restarted under the same name
    for t in range(5, 30):
        now[0] = float(t)
        watch.check()
    assert [r[:2] for r in watch.reports] == [("w1@h", False)]


from datetime import datetime, timedelta, timezone  # noqa: E402

from airflow_resilience.signals.celery import own_start  # noqa: E402

T = datetime(2026, 12, 2, 6, 56, 5, tzinfo=timezone.utc)


def started_meta(host, done):
    return {"status": "STARTED", "result": {"pid": 1, "hostname": host}, "date_done": done}


@pytest.mark.parametrize(
    ("meta", "ti_start", "expected"),
    [
        (started_meta("w1@h", T - timedelta(seconds=0.05)), T, True),  # written just before the supervisor started
        (started_meta("w1@h", (T + timedelta(seconds=1)).replace(tzinfo=None)), T, True),  # naive = UTC (DB backend)
        (started_meta("w1@h", T + timedelta(seconds=38)), T, False),  # a redelivered copy, ignored elsewhere
        (started_meta("w1@h", (T + timedelta(seconds=38)).isoformat()), T, False),
        (started_meta("w1@h", None), T, None),  # key-value backends keep no date for STARTED: unknown
        (started_meta("w1@h", "not a date"), T, None),
        (started_meta("w1@h", T), None, None),
        (None, T, None),
    ],
)
def test_own_start(meta, ti_start, expected):
    assert own_start(meta, ti_start) is expected


def test_a_started_meta_rewritten_by_an_ignored_redelivered_copy_is_no_evidence():
    lost = LostWorker("w1@h", 0.0, 3.0, frozenset(), frozenset())
    fresh = {"t1": started_meta("w1@h", T)}
    late = {"t1": started_meta("w1@h", T + timedelta(seconds=38))}
    assert lost_task_ids(lost, claimed=(), unclaimed_running=["t1"], metas=fresh, starts={"t1": T}) == {"t1": STARTED_THERE}
    assert lost_task_ids(lost, claimed=(), unclaimed_running=["t1"], metas=late, starts={"t1": T}) == {}
    # without the task instance's start (or the meta's date) the hostname rule decides, as before
    assert lost_task_ids(lost, claimed=(), unclaimed_running=["t1"], metas=late) == {"t1": STARTED_THERE}
