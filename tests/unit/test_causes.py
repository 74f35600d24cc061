"""classify(evidence) as a table: the most specific evidence wins, a user's hand first."""

from __future__ import annotations

import signal

import pytest

from airflow_resilience.causes import Evidence, FailureCause, FailureKind, Reason, classify

I, A, T, M, U = (
    FailureKind.INFRASTRUCTURE,
    FailureKind.APPLICATION,
    FailureKind.TIMEOUT,
    FailureKind.MANUAL,
    FailureKind.UNKNOWN,
)


@pytest.mark.parametrize(
    ("evidence", "kind", "reason"),
    [
        (Evidence(), U, Reason.UNKNOWN),
        (Evidence(exception="ValueError"), A, Reason.APP_EXCEPTION),
        (Evidence(exception="AirflowTaskTimeout", execution_timeout=True), T, Reason.EXECUTION_TIMEOUT),
        (Evidence(user_marked_state="failed", received_signal=signal.SIGTERM), M, Reason.USER_MARKED),
        (Evidence(user_marked_state="success", exit_signal=signal.SIGKILL), M, Reason.USER_MARKED),
        (Evidence(received_signal=signal.SIGTERM), I, Reason.SIGNAL_SIGTERM),
        (Evidence(received_signal=signal.SIGTERM, exception="AirflowTaskTerminated"), I, Reason.SIGNAL_SIGTERM),
        (Evidence(exit_signal=signal.SIGKILL), I, Reason.SIGNAL_SIGKILL),
        (Evidence(exit_signal=signal.SIGSEGV), I, Reason.SIGNAL_OTHER),
        (Evidence(exit_signal=signal.SIGKILL, oom_kills=1), I, Reason.OOM_KILLED),
        (Evidence(k8s_disruption="EvictionByEvictionAPI", received_signal=15), I, Reason.K8S_EVICTION),
        (Evidence(k8s_disruption="PreemptionByScheduler"), I, Reason.K8S_PREEMPTION),
        (Evidence(k8s_disruption="DeletionByTaintManager"), I, Reason.K8S_TAINT),
        (Evidence(k8s_disruption="TerminationByKubelet"), I, Reason.NODE_DRAIN),
        (Evidence(k8s_disruption="SomethingNew"), I, Reason.K8S_DISRUPTION),
        (Evidence(exit_signal=signal.SIGTERM), I, Reason.SIGNAL_SIGTERM),
        (Evidence(exit_signal=signal.SIGKILL, oom_kills=0), I, Reason.SIGNAL_SIGKILL),
        (Evidence(k8s_deleting=True, received_signal=15), FailureKind.MANUAL, Reason.USER_DELETED_POD),
        (Evidence(k8s_disruption="DeletionByPodGC", k8s_deleting=True), I, Reason.K8S_DELETED),
        (Evidence(k8s_disruption="EvictionByEvictionAPI", k8s_node_cordoned=True), I, Reason.NODE_DRAIN),
        (Evidence(k8s_disruption="DeletionByTaintManager", k8s_node_cordoned=True), I, Reason.K8S_TAINT),
        (Evidence(k8s_node_cordoned=True, received_signal=15), I, Reason.SIGNAL_SIGTERM),
        (Evidence(k8s_deleting=True, worker_lost=True), I, Reason.WORKER_LOST),
        (Evidence(cloud_notice="aws:terminate", received_signal=15), I, Reason.SPOT_INTERRUPTION),
        (Evidence(cloud_notice="gcp:preempted"), I, Reason.SPOT_INTERRUPTION),
        (Evidence(cloud_notice="gcp:maintenance"), I, Reason.MAINTENANCE),
        (Evidence(cloud_notice="azure:Preempt"), I, Reason.SPOT_INTERRUPTION),
        (Evidence(cloud_notice="azure:Reboot"), I, Reason.MAINTENANCE),
        (Evidence(worker_lost=True), I, Reason.WORKER_LOST),
        (Evidence(heartbeat_timeout=True), I, Reason.WORKER_LOST),
        (Evidence(worker_lost=True, oom_kills=2), I, Reason.OOM_KILLED),
        (Evidence(execution_timeout=True, received_signal=15), T, Reason.EXECUTION_TIMEOUT),
    ],
)
def test_classify(evidence: Evidence, kind: FailureKind, reason: Reason) -> None:
    cause = classify(evidence)
    assert (cause.kind, cause.reason) == (kind, reason)
    assert cause.summary


def test_cause_json_round_trip() -> None:
    cause = classify(Evidence(exit_signal=signal.SIGKILL))
    assert FailureCause.from_json(cause.to_json()) == cause
    assert cause.to_json()["reason"] == "signal.sigkill"
    assert "SIGKILL" in cause.summary


def test_unknown_stored_labels_read_as_unknown() -> None:
    cause = FailureCause.from_json({"kind": "cosmic", "reason": "ray.bitflip", "summary": "s"})
    assert (cause.kind, cause.reason) == (FailureKind.UNKNOWN, Reason.UNKNOWN)


def test_worker_lost_summary_names_the_evidence() -> None:
    note = "node node-a stopped renewing its Lease 18 s ago and the task's heartbeat is 13 s old"
    cause = classify(Evidence(worker_lost=True, notes=(("scheduler", note),)))
    assert cause.reason is Reason.WORKER_LOST and cause.summary.endswith(note)
    assert classify(Evidence(worker_lost=True)).summary == "the worker running the task is gone"
