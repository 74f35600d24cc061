"""Metric names as a table: every metric keeps its tagged form and gets a dotted form plain StatsD keeps, with
segments Airflow accepts and a fixed depth; sending never raises."""

from __future__ import annotations

import sys
import types
from datetime import datetime, timedelta, timezone

import pytest

from airflow._shared.observability.metrics.validators import stat_name_default_handler, stat_name_otel_handler

from airflow_resilience.airflow import metrics
from airflow_resilience.causes import FailureCause, FailureKind, Reason


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("signal.sigkill", "signal_sigkill"),
        (Reason.SIGNAL_SIGKILL, "signal_sigkill"),
        (FailureKind.INFRASTRUCTURE, "infrastructure"),
        ("k8s.pod_deleted", "k8s_pod_deleted"),
        ("resubmitted-new-token", "resubmitted-new-token"),
        ("DatabricksSubmitRunOperator", "DatabricksSubmitRunOperator"),
        ("a/b c,d=e:f|g", "a_b_c_d_e_f_g"),
        ("ünïcode", "_n_code"),
        ("", "unknown"),
        (None, "unknown"),
        (3, "3"),
        ("x" * 100, "x" * metrics.SEGMENT_MAX),
    ],
)
def test_segment(value, segment) -> None:
    assert metrics.segment(value) == segment


@pytest.mark.parametrize(
    ("name", "tags", "dotted"),
    [
        ("resilience.failures", {"kind": "infrastructure", "reason": "signal.sigkill"},
         "resilience.failures.infrastructure.signal_sigkill"),
        ("resilience.failures", {"kind": "application", "reason": "app.exception"},
         "resilience.failures.application.app_exception"),
        ("resilience.decisions", {"kind": "infrastructure", "reason": "worker.lost", "verdict": "grant"},
         "resilience.decisions.grant.infrastructure.worker_lost"),
        ("resilience.decisions", {"kind": "manual", "reason": "user.marked_state", "verdict": "manual"},
         "resilience.decisions.manual.manual.user_marked_state"),
        ("resilience.bookkeeping_errors", {"where": "attempt"}, "resilience.bookkeeping_errors.attempt"),
        ("resilience.submissions", {"operator": "ExternalJobOperator", "outcome": "resubmitted-same-token"},
         "resilience.submissions.ExternalJobOperator.resubmitted-same-token"),
        ("resilience.resumes", {"operator": "MyOp", "method": "poll"}, "resilience.resumes.MyOp.poll"),
        ("resilience.watermark.acquires", {"outcome": "held"}, "resilience.watermark.acquires.held"),
        ("resilience.watermark.fenced", {"op": "commit"}, "resilience.watermark.fenced.commit"),
        ("resilience.recovery", {"reason": "oom.killed"}, "resilience.recovery.oom_killed"),
        ("resilience.detector.workers_seen", {"kind": "celery"}, "resilience.detector.workers_seen.celery"),
        ("resilience.detector.lost", {"kind": "kubernetes"}, "resilience.detector.lost.kubernetes"),
        ("resilience.detector.errors", {"kind": "local"}, "resilience.detector.errors.local"),
        # a missing tag keeps the depth
        ("resilience.failures", {"kind": "unknown"}, "resilience.failures.unknown.unknown"),
        ("resilience.decisions", {}, "resilience.decisions.unknown.unknown.unknown"),
        # no dotted form: no tags, or not in the catalog
        ("resilience.watermark.commits", {}, None),
        ("resilience.checkpoint.write", {}, None),
        ("resilience.detector.last_round", {}, None),
        ("resilience.not_a_metric", {"kind": "x"}, None),
    ],
)
def test_dotted_name(name, tags, dotted) -> None:
    assert metrics.dotted_name(name, tags) == dotted


def test_every_dotted_name_has_the_catalogs_depth() -> None:
    hostile = "a.b.c/d e" * 20
    for metric in metrics.CATALOG.values():
        if not metric.dotted:
            continue
        name = metrics.dotted_name(metric.name, {tag: hostile for tag in metric.dotted})
        assert name.count(".") == metric.name.count(".") + len(metric.dotted), name


ADVERSARIAL = ["signal.sigkill", "", "x" * 300, "weird name/with:chars|and,commas=", "ünï.côdé", "a" * 48 + ".b"]


@pytest.mark.parametrize("value", ADVERSARIAL)
@pytest.mark.parametrize("name", sorted(metrics.CATALOG))
def test_every_name_passes_airflows_validation(name, value) -> None:
    tags = {tag: value for tag in metrics.CATALOG[name].dotted}
    for stat, _tags in metrics.emitted(name, tags):
        assert len(stat) <= metrics.NAME_MAX
        assert stat_name_default_handler(stat) == stat  # raises when Airflow would refuse it
        stat_name_otel_handler("airflow", stat)


def test_overlong_name_is_cut_not_refused() -> None:
    name = "resilience." + "n" * 400
    assert metrics.stat_name(name) == name[: metrics.NAME_MAX]
    assert metrics.stat_name("resilience.a b") == "resilience.a_b"


def test_emitted_tagged_form_keeps_tag_values() -> None:
    cause = {"kind": FailureKind.INFRASTRUCTURE, "reason": Reason.SIGNAL_SIGKILL}
    assert metrics.emitted("resilience.failures", cause) == [
        ("resilience.failures", {"kind": "infrastructure", "reason": "signal.sigkill"}),
        ("resilience.failures.infrastructure.signal_sigkill", {}),
    ]
    # tags that are not part of the dotted name travel with it; None values are not sent
    assert metrics.emitted("resilience.recovery", {"reason": "worker.lost", "extra": "x", "none": None}) == [
        ("resilience.recovery", {"reason": "worker.lost", "extra": "x"}),
        ("resilience.recovery.worker_lost", {"extra": "x"}),
    ]
    assert metrics.emitted("resilience.failures", cause, dotted=False) == [
        ("resilience.failures", {"kind": "infrastructure", "reason": "signal.sigkill"}),
    ]


class FakeStats(types.ModuleType):
    def __init__(self, legacy: bool = True, fail: bool = False) -> None:
        super().__init__("fake_stats")
        self._factory = object()
        self._export_legacy_names = legacy
        self.sent: list[tuple] = []
        self.fail = fail

    def _record(self, op, stat, value, tags=None):
        if self.fail:
            raise RuntimeError("statsd down")
        self.sent.append((op, stat, value, tags))

    def incr(self, stat, count=None, rate=None, *, tags=None):
        self._record("incr", stat, count, tags)

    def timing(self, stat, dt, *, tags=None):
        self._record("timing", stat, dt, tags)

    def gauge(self, stat, value, rate=None, delta=None, *, tags=None):
        self._record("gauge", stat, value, tags)


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> FakeStats:
    fake = FakeStats()
    monkeypatch.setattr(metrics, "_stats", lambda: fake)
    return fake


def test_incr_timing_gauge_send_both_forms(stats: FakeStats) -> None:
    metrics.incr("resilience.failures", kind="infrastructure", reason="signal.sigkill")
    metrics.timing("resilience.checkpoint.write", 12.5)
    metrics.gauge("resilience.detector.workers_seen", 3, kind="local")
    metrics.incr("resilience.detector.lost", 2, kind="celery")
    assert stats.sent == [
        ("incr", "resilience.failures", 1, {"kind": "infrastructure", "reason": "signal.sigkill"}),
        ("incr", "resilience.failures.infrastructure.signal_sigkill", 1, None),
        ("timing", "resilience.checkpoint.write", 12.5, None),
        ("gauge", "resilience.detector.workers_seen", 3, {"kind": "local"}),
        ("gauge", "resilience.detector.workers_seen.local", 3, None),
        ("incr", "resilience.detector.lost", 2, {"kind": "celery"}),
        ("incr", "resilience.detector.lost.celery", 2, None),
    ]


def test_legacy_names_off_sends_the_tagged_form_only(stats: FakeStats) -> None:
    stats._export_legacy_names = False
    metrics.incr("resilience.bookkeeping_errors", where="attempt")
    assert stats.sent == [("incr", "resilience.bookkeeping_errors", 1, {"where": "attempt"})]


def test_sending_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_stats", lambda: FakeStats(fail=True))
    metrics.incr("resilience.failures", kind="x", reason="y")
    metrics.timing("resilience.recovery", 1.0, reason="y")
    metrics.gauge("resilience.detector.last_round", 1.0)

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no")

    monkeypatch.setattr(metrics, "_stats", lambda: FakeStats())
    metrics.incr("resilience.failures", kind=Unprintable(), reason="y")

    def broken():
        raise ImportError("no airflow here")

    monkeypatch.setattr(metrics, "_stats", broken)
    metrics.incr("resilience.failures", kind="x", reason="y")


def test_the_stats_set_up_in_this_process_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    sdk, core = FakeStats(), FakeStats()
    sdk._factory = None  # not set up here (the scheduler, the API server)
    monkeypatch.setitem(sys.modules, metrics._STATS_MODULES[0], sdk)
    monkeypatch.setitem(sys.modules, metrics._STATS_MODULES[1], core)
    assert metrics._stats() is core
    sdk._factory = object()  # the task runner set up the Task SDK's
    assert metrics._stats() is sdk


def test_accounting_counts_failure_and_decision(stats: FakeStats) -> None:
    from airflow_resilience.airflow import accounting
    from airflow_resilience.budget import BudgetPolicy
    from airflow_resilience.judge import judge
    from airflow_resilience.ledger import Ledger

    cause = FailureCause(FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGKILL, "killed")
    judgement = judge(Ledger(), try_number=1, max_tries=0, cause=cause, budget=BudgetPolicy(), infra_retry_delay=1.0)
    accounting.write(judgement, lambda key, value: None)
    accounting.bookkeeping_failed("ledger read", RuntimeError("x"))
    assert [s[1] for s in stats.sent] == [
        "resilience.failures",
        "resilience.failures.infrastructure.signal_sigkill",
        "resilience.decisions",
        "resilience.decisions.grant.infrastructure.signal_sigkill",
        "resilience.bookkeeping_errors",
        "resilience.bookkeeping_errors.ledger",
    ]


class Detector:
    def __init__(self, kind, seen=None, lost=0, fail=False) -> None:
        self.kind, self.seen, self.lost, self.fail = kind, seen, lost, fail
        self.checks = 0

    def check(self) -> int:
        self.checks += 1
        if self.fail:
            raise RuntimeError("broker down")
        return self.lost


def test_detector_round_metrics(stats: FakeStats) -> None:
    from airflow_resilience.airflow.scheduler import run_round

    ticks = iter([10.0, 10.25])
    detectors = [Detector("local", seen=4), Detector("celery", fail=True), Detector("kubernetes", seen=7, lost=2)]
    run_round(detectors, clock=lambda: next(ticks), wall=lambda: 1700000000.5)
    assert all(d.checks == 1 for d in detectors)
    assert [(op, stat, value) for op, stat, value, _ in stats.sent] == [
        ("gauge", "resilience.detector.workers_seen", 4),
        ("gauge", "resilience.detector.workers_seen.local", 4),
        ("incr", "resilience.detector.errors", 1),
        ("incr", "resilience.detector.errors.celery", 1),
        ("incr", "resilience.detector.lost", 2),
        ("incr", "resilience.detector.lost.kubernetes", 2),
        ("gauge", "resilience.detector.workers_seen", 7),
        ("gauge", "resilience.detector.workers_seen.kubernetes", 7),
        ("gauge", "resilience.detector.round_duration", 250.0),
        ("gauge", "resilience.detector.last_round", 1700000000.5),
    ]


def test_detectors_name_their_kind() -> None:
    from airflow_resilience.airflow.celery_watch import CeleryWorkerWatch
    from airflow_resilience.airflow.kubernetes import KubernetesPodWatch
    from airflow_resilience.airflow.scheduler import LostWorkerDetector

    assert (LostWorkerDetector.kind, CeleryWorkerWatch.kind, KubernetesPodWatch.kind) == ("local", "celery", "kubernetes")


def _ledger(*records):
    from airflow_resilience.ledger import AttemptRecord, Ledger

    return Ledger(tuple(AttemptRecord(t, FailureCause(kind, reason, ""), verdict, at=at) for t, kind, reason, verdict, at in records))


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
I, A = FailureKind.INFRASTRUCTURE, FailureKind.APPLICATION


@pytest.mark.parametrize(
    ("records", "try_number", "expected"),
    [
        ([(1, I, Reason.SIGNAL_SIGKILL, "grant", (NOW - timedelta(seconds=42)).isoformat())], 2, (42000.0, "signal.sigkill")),
        # naive times are UTC (how the ledger writes them: isoformat of an aware UTC time)
        ([(1, I, Reason.WORKER_LOST, "grant", "2026-01-01T11:59:59")], 2, (1000.0, "worker.lost")),
        # a worker clock behind the API server's: 0, never negative
        ([(1, I, Reason.WORKER_LOST, "grant", (NOW + timedelta(seconds=5)).isoformat())], 2, (0.0, "worker.lost")),
        # not an infrastructure grant, not the previous try, no usable time
        ([(1, A, Reason.APP_EXCEPTION, "stock", NOW.isoformat())], 2, None),
        ([(1, I, Reason.SIGNAL_SIGKILL, "exhausted", NOW.isoformat())], 2, None),
        ([(1, I, Reason.SIGNAL_SIGKILL, "grant", NOW.isoformat())], 3, None),
        ([(1, I, Reason.SIGNAL_SIGKILL, "grant", "")], 2, None),
        ([(1, I, Reason.SIGNAL_SIGKILL, "grant", "yesterday")], 2, None),
        ([], 2, None),
    ],
)
def test_recovery_ms(records, try_number, expected) -> None:
    from airflow_resilience.airflow.execution import recovery_ms

    found = recovery_ms(_ledger(*records), try_number, NOW)
    assert (None if found is None else (found[0], found[1].reason.value)) == expected


def test_checkpoint_store_times_its_writes(stats: FakeStats, monkeypatch: pytest.MonkeyPatch) -> None:
    from uuid import uuid4

    from airflow_resilience.airflow.store import TaskStateStore

    timed = TaskStateStore(uuid4(), max_value_bytes=0, retention_days=0, write_timer="resilience.checkpoint.write")
    plain = TaskStateStore(uuid4(), max_value_bytes=0, retention_days=0)
    for store in (timed, plain):
        monkeypatch.setattr(store, "_send_retrying", lambda key, what, msg: None)
        store.set("resilience:checkpoint:try-1", {"values": {}})
    assert [(op, stat) for op, stat, _value, _tags in stats.sent] == [("timing", "resilience.checkpoint.write")]
    assert stats.sent[0][2] >= 0


def test_a_sigterm_during_a_metric_waits_for_it() -> None:
    from airflow_resilience.airflow.execution import UNSAFE_MODULES

    assert "airflow_resilience.airflow.metrics" in UNSAFE_MODULES
