"""Watermarks: ordering of values, the record's transitions (table tests) and the Watermark API in memory."""

from __future__ import annotations

import pytest

from airflow_resilience import watermark as core
from airflow_resilience.errors import (
    WatermarkBackwardsError,
    WatermarkError,
    WatermarkFencedError,
    WatermarkHeldError,
    WatermarkValueError,
)
from airflow_resilience.watermark import (
    Action,
    Grant,
    Held,
    Holder,
    HolderStatus,
    MemoryWatermarks,
    Record,
    Watermark,
    check_forward,
    int_to_lsn,
    lsn_to_int,
)

A = Holder("ti-a", "load", "run-1", "extract", -1, 1)
B = Holder("ti-b", "load", "run-2", "extract", -1, 1)


# ------------------------------------------------------------------------------------------- ordering
@pytest.mark.parametrize(
    "old, new",
    [
        (None, 5),
        (5, 5),
        (5, 6),
        (1.5, 2),
        ("2024-01-01", "2024-01-02T00:00:00"),
        ("2024-01-01T10:00:00+00:00", "2024-01-01T11:00:00+01:00"),  # equal instants
        ("0/16B3748", "0/16B3749"),
        ("0/FFFFFFFF", "1/0"),
        ({"a": 1}, {"a": 0}),  # objects have no order
        ("abc", "abb"),  # plain text has no order
        (True, False),  # booleans have no order
    ],
)
def test_forward_values_accepted(old, new):
    check_forward("wm", old, new)


@pytest.mark.parametrize(
    "old, new, match",
    [
        (6, 5, "before the committed value 6"),
        ("2024-01-02", "2024-01-01", "never moves backwards"),
        ("2024-01-01T11:00:00+00:00", "2024-01-01T11:00:00+02:00", "before"),
        ("1/0", "0/FFFFFFFF", "before"),
        (5, "6", "number but '6' is an unordered str"),
        ("2024-01-01", 20240102, "timestamp without time zone but 20240102 is number"),
        ("2024-01-01T00:00:00+00:00", "2024-01-02", "timestamp but '2024-01-02' is timestamp without time zone"),
        ("0/1", "2024-01-01", "LSN"),
    ],
)
def test_backwards_or_kind_change_refused(old, new, match):
    with pytest.raises(WatermarkBackwardsError, match=match):
        check_forward("orders", old, new)


def test_backwards_error_says_what_to_do():
    with pytest.raises(WatermarkBackwardsError, match="airflow resilience watermark set orders VALUE --backwards"):
        check_forward("orders", 2, 1)


@pytest.mark.parametrize("lsn", ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"])
def test_lsn_round_trip(lsn):
    assert int_to_lsn(lsn_to_int(lsn)) == lsn


@pytest.mark.parametrize(
    "value, match",
    [
        (float("nan"), "not valid JSON"),
        ({1: "a"}, "not a string"),
        (object(), "not JSON-serializable"),
        ("x" * 70000, "more than the 65535 accepted"),
    ],
)
def test_bad_values_named(value, match):
    with pytest.raises(WatermarkValueError, match=match) as err:
        core.check_value("orders", value)
    assert "orders" in str(err.value)


@pytest.mark.parametrize("name", ["", "  ", None, 3, "x" * 251])
def test_bad_names(name):
    with pytest.raises(WatermarkValueError, match="watermark name"):
        Watermark(name)


# ------------------------------------------------------------------------------------------ transitions
def held(by: Holder, fence: int = 1, value=None, staged=core._NOTHING, committed=False) -> Record:
    return Record("wm", value=value, committed=committed, fence=fence, holder=by, held_since=0.0, staged=staged)


@pytest.mark.parametrize(
    "rec, who, status, expect_grant, expect_value, expect_actions",
    [
        # free name: granted with fence 1, no value yet
        (Record("wm"), A, None, True, None, []),
        # held by a live attempt of another try: wait
        (held(A), B, HolderStatus.ALIVE, False, None, []),
        # held by a dead attempt that staged: its value is dropped, B gets the old value
        (held(A, value=5, committed=True, staged=9), B, HolderStatus.ENDED, True, 5, [Action.DISCARDED]),
        # held by an attempt that succeeded but died before committing: rolled forward, B reads it
        (held(A, value=5, committed=True, staged=9), B, HolderStatus.SUCCEEDED, True, 9, [Action.ROLLED_FORWARD]),
        # succeeded without staging: nothing to commit
        (held(A, value=5, committed=True), B, HolderStatus.SUCCEEDED, True, 5, []),
        # the same try asks again (second open, resumed process): new grant, its earlier stage dropped
        (held(A, value=5, committed=True, staged=9), A, HolderStatus.ALIVE, True, 5, [Action.DISCARDED]),
    ],
)
def test_acquire_table(rec, who, status, expect_grant, expect_value, expect_actions):
    new, events, answer = core.acquire(rec, who, status, now=10.0)
    assert [e.action for e in events] == expect_actions
    if expect_grant:
        assert isinstance(answer, Grant)
        assert answer.fence == rec.fence + 1
        assert answer.value == expect_value
        assert new.holder == who and not new.has_staged
    else:
        assert isinstance(answer, Held) and answer.holder == A
        assert new == rec


def test_rolled_forward_records_who_committed():
    new, events, _ = core.acquire(held(A, value=5, committed=True, staged=9), B, HolderStatus.SUCCEEDED, now=3.0)
    assert new.committed_by == A and new.version == 1 and new.committed_at == 3.0
    assert events[0].previous == 5 and events[0].value == 9


@pytest.mark.parametrize(
    "status, match",
    [(HolderStatus.ALIVE, "still running"), (HolderStatus.ENDED, "ended without success")],
)
def test_commit_needs_recorded_success(status, match):
    with pytest.raises(WatermarkFencedError, match=match):
        core.commit(held(A, staged=3), A, 1, 0.0, status)


@pytest.mark.parametrize(
    "rec, who, fence",
    [
        (held(B, fence=2), A, 1),  # taken over
        (held(A, fence=2), A, 1),  # an older grant of the same try
        (Record("wm", fence=1), A, 1),  # released meanwhile
    ],
)
def test_stale_grant_cannot_stage_or_commit(rec, who, fence):
    with pytest.raises(WatermarkFencedError, match="no longer holds it"):
        core.stage(rec, who, fence, 1, HolderStatus.ALIVE)
    with pytest.raises(WatermarkFencedError, match="no longer holds it"):
        core.commit(rec, who, fence, 0.0)


def test_a_try_that_is_not_running_cannot_stage():
    with pytest.raises(WatermarkFencedError, match="no longer running"):
        core.stage(held(A), A, 1, 1, HolderStatus.ENDED)


def test_stage_refuses_backwards_from_committed_and_from_staged():
    rec = held(A, value=10, committed=True)
    with pytest.raises(WatermarkBackwardsError):
        core.stage(rec, A, 1, 9)
    rec = core.stage(rec, A, 1, 12)
    with pytest.raises(WatermarkBackwardsError):
        core.stage(rec, A, 1, 11)


def test_release_is_idempotent_and_ignores_stale_grants():
    rec = held(A, staged=4)
    assert core.release(rec, B, 1) == (rec, [])
    assert core.release(rec, A, 0) == (rec, [])
    freed, events = core.release(rec, A, 1)
    assert freed.holder is None and not freed.has_staged and [e.action for e in events] == [Action.DISCARDED]
    assert core.release(freed, A, 1) == (freed, [])


@pytest.mark.parametrize("force", [False, True])
def test_operator_set_while_held(force):
    rec = held(A, value=1, committed=True, staged=2)
    if not force:
        with pytest.raises(WatermarkHeldError, match="--force"):
            core.operator_set(rec, 5, HolderStatus.ALIVE, 0.0)
        return
    new, events = core.operator_set(rec, 5, HolderStatus.ALIVE, 0.0, force=True, actor="ops")
    assert [e.action for e in events] == [Action.FENCED, Action.SET]
    assert new.holder is None and new.value == 5 and new.fence == 2
    with pytest.raises(WatermarkFencedError):  # the fenced holder's late commit
        core.commit(new, A, 1, 0.0)


def test_operator_set_backwards_needs_the_flag_reset_does_not():
    rec = Record("wm", value=10, committed=True, version=3)
    with pytest.raises(WatermarkBackwardsError):
        core.operator_set(rec, 5, None, 0.0)
    new, events = core.operator_set(rec, 5, None, 0.0, backwards=True)
    assert new.value == 5 and new.version == 4 and events[0].previous == 10
    gone, events = core.operator_reset(new, None, 0.0)
    assert not gone.committed and events[0].action is Action.RESET and events[0].previous == 5


# ---------------------------------------------------------------------------------- the API in memory
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_commit_only_on_success_and_next_run_reads_it():
    store = MemoryWatermarks()
    first = store.attempt("ti-1", dag_id="d", run_id="r1", task_id="t", try_number=1)
    with Watermark("orders", default=0, backend=first) as wm:
        assert wm.value == 0 and not wm.committed
        wm.advance(20)
        assert wm.staged == 20
    assert store.records["orders"].value is None  # staged only
    first.succeed()
    second = store.attempt("ti-2", run_id="r2")
    with Watermark("orders", default=0, backend=second) as wm:
        assert wm.value == 20 and wm.version == 1


@pytest.mark.parametrize("how", ["raise", "fail", "die"])
def test_no_commit_without_success(how):
    store = MemoryWatermarks()
    store.set("orders", 10)
    first = store.attempt("ti-1")
    if how == "raise":
        with pytest.raises(RuntimeError), Watermark("orders", backend=first) as wm:
            wm.advance(20)
            raise RuntimeError("publish failed")
        assert store.records["orders"].holder is None  # released at once
    else:
        with Watermark("orders", backend=first) as wm:
            wm.advance(20)
        first.fail() if how == "fail" else first.die()
    retry = store.attempt("ti-1b", try_number=2)
    with Watermark("orders", backend=retry) as wm:
        assert wm.value == 10
    assert ("orders", Action.DISCARDED) in [(n, e.action) for n, e in store.history]


def test_success_recorded_but_commit_lost_is_rolled_forward():
    store = MemoryWatermarks()
    first = store.attempt("ti-1")
    with Watermark("orders", default=0, backend=first) as wm:
        wm.advance(7)
    store.status["ti-1"] = HolderStatus.SUCCEEDED  # Airflow recorded success; the task died before committing
    with Watermark("orders", default=0, backend=store.attempt("ti-2")) as wm:
        assert wm.value == 7


def test_waiting_holder_times_out_naming_the_holder():
    clock = FakeClock()
    store = MemoryWatermarks(clock=clock)
    with Watermark("orders", backend=store.attempt("ti-1", dag_id="load", run_id="r1", task_id="t", try_number=3)):
        pass
    other = Watermark("orders", backend=store.attempt("ti-2"), wait_timeout=5, poll_interval=1, sleep=clock.sleep, clock=clock)
    with pytest.raises(WatermarkHeldError, match=r"dag 'load', run 'r1', task 't', try 3 after waiting 5s"):
        other.__enter__()


def test_waiter_gets_the_name_when_the_holder_commits():
    clock = FakeClock()
    store = MemoryWatermarks(clock=clock)
    first = store.attempt("ti-1")
    with Watermark("orders", default=0, backend=first) as wm:
        wm.advance(3)

    def sleep(s: float) -> None:
        clock.sleep(s)
        if clock.now >= 2:
            first.succeed()

    with Watermark("orders", default=0, backend=store.attempt("ti-2"), poll_interval=0.5, sleep=sleep, clock=clock) as wm:
        assert wm.value == 3 and wm.waited == 2.0


def test_advance_checks_locally_before_sending():
    store = MemoryWatermarks()
    store.set("orders", "2024-01-02")
    with Watermark("orders", backend=store.attempt("ti-1")) as wm:
        with pytest.raises(WatermarkBackwardsError):
            wm.advance("2024-01-01")
        with pytest.raises(WatermarkValueError):
            wm.advance({"at": object()})
        wm.advance("2024-01-03")
        assert wm.staged == "2024-01-03"


def test_fenced_holder_learns_it_when_staging():
    store = MemoryWatermarks()
    first = store.attempt("ti-1")
    wm = Watermark("orders", backend=first).__enter__()
    first.die()  # given up for dead
    with Watermark("orders", backend=store.attempt("ti-2")) as later:
        later.advance(1)
    store.status["ti-1"] = HolderStatus.ALIVE  # the zombie wakes up
    with pytest.raises(WatermarkFencedError):
        wm.advance(5)


def test_value_needs_an_open_watermark():
    with pytest.raises(WatermarkError, match="not open"):
        Watermark("orders", backend=MemoryWatermarks().attempt("x")).value


# ------------------------------------------------------------------------------ where tasks send requests
@pytest.mark.parametrize(
    "configured, execution, base, expected",
    [
        ("http://api:8080/resilience/", "http://x/execution/", "", "http://api:8080/resilience"),
        ("", "http://127.0.0.1:8080/execution/", "", "http://127.0.0.1:8080/resilience"),
        ("", "https://af.example.com/prefix/execution", "", "https://af.example.com/prefix/resilience"),
        ("", "", "http://af:8080/", "http://af:8080/resilience"),
    ],
)
def test_api_url(configured, execution, base, expected):
    from airflow_resilience.airflow.watermark_client import api_url

    assert api_url(configured, execution, base) == expected


def test_api_url_unset_names_the_option():
    from airflow_resilience.airflow.watermark_client import api_url
    from airflow_resilience.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"\[resilience\] api_url"):
        api_url("", "", "")


@pytest.mark.parametrize(
    "status, error, expected",
    [
        (403, "PermissionError", "WatermarkFencedError"),
        (404, "UnknownWatermarkError", "UnknownWatermarkError"),
        (409, "WatermarkFencedError", "WatermarkFencedError"),
        (422, "WatermarkBackwardsError", "WatermarkBackwardsError"),
        (422, "WatermarkValueError", "WatermarkValueError"),
        (404, None, "WatermarkError"),  # no plugin on the API server: a plain 404 page
    ],
)
def test_refusals_become_named_errors(status, error, expected):
    import httpx

    from airflow_resilience.airflow.watermark_client import HttpWatermarkBackend

    def answer(request: httpx.Request) -> httpx.Response:
        if error is None:
            return httpx.Response(status, json={"detail": "Not Found"})
        return httpx.Response(status, json={"detail": {"error": error, "message": f"refused: {error}"}})

    backend = HttpWatermarkBackend("http://af/resilience", Holder("ti-1"), "nonce")
    backend._client = httpx.Client(base_url="http://af/resilience", transport=httpx.MockTransport(answer))
    with pytest.raises(WatermarkError) as err:
        backend.stage("orders", 1, 5)
    assert type(err.value).__name__ == expected
    if error is None:
        assert "plugin installed on the API server" in str(err.value)


def test_a_failed_release_does_not_hide_the_blocks_error():
    store = MemoryWatermarks()
    attempt = store.attempt("ti-1")

    def broken(name, fence):
        raise ConnectionError("API server unreachable")

    attempt.release = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="publish failed"), Watermark("orders", backend=attempt) as wm:
        wm.advance(1)
        raise RuntimeError("publish failed")
    store.status["ti-1"] = HolderStatus.ENDED  # Airflow fails the try
    with Watermark("orders", default=0, backend=store.attempt("ti-2")) as wm:
        assert wm.value == 0  # its stage was dropped by the next opener


def test_second_open_of_a_name_in_one_attempt_names_both_places():
    """Opening the same name again in the same attempt would hand out a new hold and silently drop what the
    first staged: it is an error naming where each was opened. Another attempt opening it just waits."""
    store = MemoryWatermarks()
    mine = store.attempt("ti-twice")
    with Watermark("twice", default=0, backend=mine) as wm:
        wm.advance(5)
    with pytest.raises(WatermarkError) as err, Watermark("twice", default=0, backend=store.attempt("ti-twice")):
        pass
    message = str(err.value)
    assert "already open in this attempt (opened at " in message and "test_watermark.py:" in message
    assert message.count("test_watermark.py:") == 2  # both places
    assert store.records["twice"].staged == 5  # the first hold and its staged value are intact
    mine.succeed()
    assert store.records["twice"].value == 5
