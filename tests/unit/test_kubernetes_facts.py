"""Pod facts (what a task pod says about how its try ended), their evidence, and the node-loss rule."""

from __future__ import annotations

import pytest

from airflow_resilience.causes import Evidence, FailureKind, Reason, classify
from airflow_resilience.signals.kubernetes import facts_evidence, notable, pod_facts


def pod(*, disruption=None, deleting=False, terminated=None, node="node-a"):
    status: dict = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    if disruption:
        status["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": disruption})
    if terminated:
        status["containerStatuses"] = [{"name": "base", "state": {"terminated": terminated}}]
    meta = {"name": "p", "uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T03:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


CORDONED = {"metadata": {"name": "node-a"}, "spec": {"unschedulable": True}}
SCHEDULABLE = {"metadata": {"name": "node-a"}, "spec": {}}


@pytest.mark.parametrize(
    ("document", "node", "kind", "reason"),
    [
        (pod(disruption="EvictionByEvictionAPI", deleting=True), SCHEDULABLE, FailureKind.INFRASTRUCTURE, Reason.K8S_EVICTION),
        (pod(disruption="EvictionByEvictionAPI", deleting=True), CORDONED, FailureKind.INFRASTRUCTURE, Reason.NODE_DRAIN),
        (pod(disruption="PreemptionByScheduler", deleting=True), None, FailureKind.INFRASTRUCTURE, Reason.K8S_PREEMPTION),
        (pod(disruption="DeletionByTaintManager", deleting=True), CORDONED, FailureKind.INFRASTRUCTURE, Reason.K8S_TAINT),
        (pod(disruption="DeletionByPodGC", deleting=True), None, FailureKind.INFRASTRUCTURE, Reason.K8S_DELETED),
        (pod(terminated={"reason": "OOMKilled", "exitCode": 137}), None, FailureKind.INFRASTRUCTURE, Reason.OOM_KILLED),
        (pod(terminated={"reason": "Error", "exitCode": 137}), None, FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGKILL),
        (pod(terminated={"reason": "Error", "exitCode": 143}), None, FailureKind.INFRASTRUCTURE, Reason.SIGNAL_SIGTERM),
        (pod(deleting=True), SCHEDULABLE, FailureKind.MANUAL, Reason.USER_DELETED_POD),
        (pod(deleting=True, terminated={"reason": "Error", "exitCode": 143}), None, FailureKind.MANUAL, Reason.USER_DELETED_POD),
        (pod(terminated={"reason": "Error", "exitCode": 1}), None, FailureKind.UNKNOWN, Reason.UNKNOWN),
    ],
)
def test_pod_facts_classify(document, node, kind, reason) -> None:
    cause = classify(Evidence(**facts_evidence(pod_facts(document, node))))
    assert (cause.kind, cause.reason) == (kind, reason), cause


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (pod(), False),
        (pod(terminated={"reason": "Completed", "exitCode": 0}), False),
        (pod(terminated={"reason": "Error", "exitCode": 1}), True),
        (pod(deleting=True), True),
        (pod(disruption="EvictionByEvictionAPI"), True),
    ],
)
def test_notable(document, expected) -> None:
    assert notable(pod_facts(document)) is expected


@pytest.mark.parametrize("junk", [None, "pod", 3, [], {"metadata": "x", "spec": None, "status": 7}])
def test_pod_facts_of_junk_says_nothing(junk) -> None:
    facts = pod_facts(junk)
    assert facts_evidence(facts) == {} and not notable(facts)


def test_facts_are_json_ready() -> None:
    import json

    facts = pod_facts(pod(disruption="EvictionByEvictionAPI", deleting=True, terminated={"reason": "Error", "exitCode": 143}), CORDONED)
    assert json.loads(json.dumps(facts)) == facts
    assert facts == {"pod": "p", "uid": "u1", "node": "node-a", "disruption": "EvictionByEvictionAPI", "deleting": True,
                     "terminated": {"reason": "Error", "exit_code": 143}, "node_cordoned": True}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TI:
    def __init__(self, heartbeat_age: float) -> None:
        from datetime import datetime, timedelta, timezone

        self.last_heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=heartbeat_age)
        self.start_date = self.last_heartbeat_at


@pytest.mark.parametrize(
    ("lease_changes", "silence", "heartbeat_age", "lost"),
    [
        ("renewing", 30, 30, False),       # the Lease keeps changing: alive, whatever the heartbeat says
        ("silent", 30, 30, True),          # Lease silent 30 s of our clock and heartbeat 30 s old: lost
        ("silent", 30, 2, False),          # slow node, task still heartbeating: left alone
        ("silent", 10, 30, False),         # not silent long enough
        ("never-seen", 30, 30, False),     # a node we never observed: no evidence
    ],
)
def test_node_lost_needs_both_silences(lease_changes, silence, heartbeat_age, lost) -> None:
    pytest.importorskip("airflow")
    from airflow_resilience.airflow.kubernetes import KubernetesPodWatch

    clock = Clock()
    watch = KubernetesPodWatch(node_lost_after=20, heartbeat_timeout=300, clock=clock)
    if lease_changes != "never-seen":
        watch.observe_leases({"node-a": "t0"})
    clock.t += silence
    if lease_changes == "renewing":
        watch.observe_leases({"node-a": "t1"})
    elif lease_changes == "silent":
        watch.observe_leases({"node-a": "t0"})  # unchanged renewTime: still silent
    key = ("d", "t", "r", 1, -1)
    assert watch._node_lost(TI(heartbeat_age), "node-a", key) is lost


def test_node_lost_reported_once_and_disabled_at_zero() -> None:
    pytest.importorskip("airflow")
    from airflow_resilience.airflow.kubernetes import KubernetesPodWatch

    clock = Clock()
    watch = KubernetesPodWatch(node_lost_after=20, heartbeat_timeout=300, clock=clock)
    watch.observe_leases({"node-a": "t0"})
    clock.t += 60
    key = ("d", "t", "r", 1, -1)
    assert watch._node_lost(TI(60), "node-a", key)
    watch._lost_reported.add(key)
    assert not watch._node_lost(TI(60), "node-a", key)
    off = KubernetesPodWatch(node_lost_after=0, heartbeat_timeout=300, clock=clock)
    off.observe_leases({"node-a": "t0"})
    clock.t += 60
    assert not off._node_lost(TI(60), "node-a", key)


def test_memory_quantities() -> None:
    from airflow_resilience.testing.kube.node_agent import memory_bytes

    assert [memory_bytes(q) for q in ("768Mi", "1Gi", "1G", "1048576", "512k", None, "")] == [
        768 * 2**20, 2**30, 10**9, 1048576, 512000, None, None]


def test_go_module_replaces_every_staging_module() -> None:
    from airflow_resilience.testing.kube.build import STAGED, go_mod

    text = go_mod("v1.36.3")
    assert "require k8s.io/kubernetes v1.36.3" in text
    for m in STAGED:
        assert f"\tk8s.io/{m} => k8s.io/{m} v0.36.3" in text


def test_keep_off_adds_the_requirement_and_keeps_the_users_affinity() -> None:
    k8s = pytest.importorskip("kubernetes.client.models")
    from airflow_resilience.airflow.kubernetes import keep_off

    bare = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base")]))
    keep_off(bare, "node-a")
    terms = bare.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert [(e.key, e.operator, e.values) for t in terms for e in t.match_expressions] == [("kubernetes.io/hostname", "NotIn", ["node-a"])]

    zone = k8s.V1NodeSelectorRequirement(key="zone", operator="In", values=["a", "b"])
    users = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base")], affinity=k8s.V1Affinity(
        node_affinity=k8s.V1NodeAffinity(required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
            node_selector_terms=[k8s.V1NodeSelectorTerm(match_expressions=[zone]), k8s.V1NodeSelectorTerm(match_expressions=[zone])]))))) 
    keep_off(users, "node-b")
    terms = users.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert len(terms) == 2 and all([e.key for e in t.match_expressions] == ["zone", "kubernetes.io/hostname"] for t in terms)


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        ("LocalExecutor", ["LostWorkerDetector"]),
        ("CeleryExecutor", ["CeleryWorkerWatch"]),
        ("KubernetesExecutor", ["KubernetesPodWatch"]),
        ("CeleryExecutor,KubernetesExecutor", ["CeleryWorkerWatch", "KubernetesPodWatch"]),
        ("LocalExecutor,KubernetesExecutor", ["LostWorkerDetector", "KubernetesPodWatch"]),
        ("airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor", ["KubernetesPodWatch"]),
        ("my_company.executors.EdgeLike", ["LostWorkerDetector"]),
    ],
)
def test_one_detector_per_executor(monkeypatch, executor, expected) -> None:
    pytest.importorskip("airflow")
    from airflow.configuration import conf

    from airflow_resilience.airflow import celery_watch
    from airflow_resilience.airflow.scheduler import detectors_for
    from airflow_resilience.config import Settings

    monkeypatch.setattr(celery_watch.CeleryWorkerWatch, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(conf, "get", lambda section, key, fallback=None, **kw: executor if (section, key) == ("core", "executor") else fallback)
    assert [type(d).__name__ for d in detectors_for(Settings(), 300)] == expected
