"""KubernetesExecutor on a real Kubernetes control plane (kube-apiserver, kube-controller-manager,
kube-scheduler built from k8s.io/kubernetes, etcd) with two node agents in the kubelet's place: evictions,
drains, a lost node, OOM kills, a user's deletion and an application error — on a real Airflow 3.3.2 with
PostgreSQL. Tries, states and retries come from Airflow's own ``task_instance``/``task_instance_history``.

One cluster and one Airflow for the module (the cluster binaries are built once per version and cached,
see docs/kubernetes.md). Short settings: the node-loss check every 1 s and 12 s of silence (default 20 s);
the infrastructure retry delay 1 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_resilience.airflow.kubernetes import K8S_KEY
from airflow_resilience.ledger import LEDGER_KEY
from airflow_resilience.testing.harness import AirflowEnvironment, EnvironmentUnavailable
from airflow_resilience.testing.services import unavailable

pytestmark = pytest.mark.airflow

HERE = Path(__file__).parent
STEPS = "kube_steps"
NODE_LOST_AFTER = 12


@pytest.fixture(scope="module")
def kube_env(kube_cluster, suite_services):
    try:
        af = AirflowEnvironment.create(
            dags=[HERE / "kube_dags", HERE / "dags" / "resilience_marks.py"],
            executor="kubernetes",
            kube=kube_cluster,
            parallelism=4,
            config={
                "AIRFLOW__RESILIENCE__LOST_WORKER_CHECK_INTERVAL": "1",
                "AIRFLOW__RESILIENCE__KUBERNETES_NODE_LOST_AFTER": str(NODE_LOST_AFTER),
                "AIRFLOW__RESILIENCE__INFRA_RETRY_DELAY": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            },
        )
    except EnvironmentUnavailable as exc:
        unavailable(f"KubernetesExecutor tests: {exc}")
    try:
        yield af
    finally:
        af.stop()


@pytest.fixture
def cluster(kube_env, kube_cluster):
    """Both nodes up and schedulable before and after each test (a test may kill or drain one)."""
    yield kube_env
    for name in list(kube_cluster.nodes):
        if f"node/{name}" not in kube_cluster.procs:
            kube_cluster.start_node(name)
        kube_cluster.kubectl("uncordon", name)
    kube_cluster.wait_nodes_ready(120)


def ledger(af, dag, run_id, task="work"):
    return af.state_store(dag, run_id, task)[LEDGER_KEY]["attempts"]


def pod_of_try(af, run_id, t, dag=STEPS):
    return af.wait_for_pod(dag, run_id, "work", t, phase="Running", timeout=120)


def steps_running(af, marks, *, done: int, steps: int = 60) -> tuple[str, dict]:
    """Trigger the steps DAG; return its run id and try 1's pod once ``done`` steps have finished."""
    run_id = af.trigger(STEPS, conf={"marks": str(marks.path), "steps": steps, "delay": 0.3})
    pod = pod_of_try(af, run_id, 1)
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= done)
    return run_id, pod


def nodes_of_try(af, run_id, t) -> list[str]:
    return [p["spec"].get("nodeName") for p in af.task_pods(STEPS, run_id, "work") if p["metadata"]["annotations"].get("try_number") == str(t)]


def assert_resumed(marks) -> None:
    finished = {e["i"] for e in marks.of("item-end", 1)}
    started2 = [e["i"] for e in marks.of("item-start", 2)]
    assert started2, "the second try did no step"
    assert started2[0] == max(finished) + 1, (sorted(finished), started2[:3])  # <= 1 step redone


def assert_infra_granted(af, dag, run_id, reason_prefixes) -> dict:
    tries = af.try_history(dag, run_id, "work")
    assert [t.try_number for t in tries] == [1, 2], [(t.try_number, t.state) for t in tries]
    assert tries[-1].state == "success"
    assert tries[-1].max_tries == 1  # the user's retries=0 plus the one try granted from the infrastructure budget
    first = ledger(af, dag, run_id)[0]
    assert first["cause"]["kind"] == "infrastructure", first
    assert first["cause"]["reason"].startswith(tuple(reason_prefixes)), first
    assert first["verdict"] == "grant", first
    return first


def test_eviction_drains_and_next_pod_resumes(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id, pod = steps_running(af, marks, done=20)
    evicted_at = time.time()
    kube.evict(pod["metadata"]["name"], grace=30)
    start2 = marks.wait_for(lambda e: e["ev"] == "attempt-start" and e["t"] == 2, timeout=90)
    assert af.wait_for_run(STEPS, run_id, timeout=180) == "success"
    first = assert_infra_granted(af, STEPS, run_id, ["k8s.eviction"])
    assert "EvictionByEvictionAPI" in first["cause"]["summary"]
    assert_resumed(marks)
    assert start2["pod"] != pod["metadata"]["name"]  # a new pod
    print(f"eviction -> next try's first step: {start2['at'] - evicted_at:.1f} s")


def test_kubectl_drain_is_node_drain(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id, pod = steps_running(af, marks, done=10)
    node = pod["spec"]["nodeName"]
    drained = kube.kubectl("drain", node, "--force", "--ignore-daemonsets", "--grace-period=30", "--timeout=90s")
    assert "evicting pod" in drained.stdout + drained.stderr, drained
    assert af.wait_for_run(STEPS, run_id, timeout=180) == "success"
    first = assert_infra_granted(af, STEPS, run_id, ["node.drain"])
    assert "cordoned" in first["cause"]["summary"]
    assert_resumed(marks)
    assert all(n != node for n in nodes_of_try(af, run_id, 2))  # cordoned: the next pod runs elsewhere


def test_node_lost_is_noticed_and_resumed_elsewhere(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id, pod = steps_running(af, marks, done=10)
    node = pod["spec"]["nodeName"]
    killed_at = time.time()
    kube.kill_node(node)
    start2 = marks.wait_for(lambda e: e["ev"] == "attempt-start" and e["t"] == 2, timeout=120)
    assert af.wait_for_run(STEPS, run_id, timeout=180) == "success"
    first = assert_infra_granted(af, STEPS, run_id, ["worker.lost"])
    assert f"node {node} stopped renewing its Lease" in first["cause"]["summary"], first
    assert_resumed(marks)
    pods2 = nodes_of_try(af, run_id, 2)
    assert pods2 and all(n != node for n in pods2)  # the lost node is avoided
    print(f"node lost -> next try's start: {start2['at'] - killed_at:.1f} s")


def test_oom_killed_container_is_granted(cluster, marks):
    af = cluster
    run_id = af.trigger("kube_oom", conf={"marks": str(marks.path), "steps": 8, "delay": 0.3, "oom_at": 3})
    assert af.wait_for_run("kube_oom", run_id, timeout=240) == "success"
    assert not marks.of("not-killed", 1)
    first = assert_infra_granted(af, "kube_oom", run_id, ["oom.killed"])
    assert "OOMKilled" in first["cause"]["summary"] or "oom" in first["cause"]["summary"].lower(), first
    facts = af.state_store("kube_oom", run_id, "work").get(K8S_KEY)
    assert facts and facts["terminated"]["reason"] == "OOMKilled" and facts["try_number"] == 1, facts
    assert_resumed(marks)


def test_user_deleting_the_pod_is_manual_no_grant(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id, pod = steps_running(af, marks, done=5)
    kube.delete_pod(pod["metadata"]["name"], grace=30)
    assert af.wait_for_run(STEPS, run_id, timeout=120) == "failed"
    tries = af.try_history(STEPS, run_id, "work")
    assert [t.try_number for t in tries] == [1] and tries[0].state == "failed"
    assert tries[0].max_tries == 0  # nothing granted
    first = ledger(af, STEPS, run_id)[0]
    assert first["cause"]["kind"] == "manual" and first["cause"]["reason"] == "user.pod_deleted", first
    assert first["verdict"] in ("stock", "manual"), first
    assert not marks.of("attempt-start", 2)


def test_application_error_spends_user_retries_as_stock(cluster, marks):
    af = cluster
    run_id = af.trigger("kube_app_error", conf={"marks": str(marks.path)})
    assert af.wait_for_run("kube_app_error", run_id, timeout=180) == "failed"
    tries = af.try_history("kube_app_error", run_id, "work")
    assert [t.try_number for t in tries] == [1, 2] and tries[-1].state == "failed", [(t.try_number, t.state) for t in tries]
    assert len(marks.of("attempt-start")) == 2
    assert all(t.max_tries == 1 for t in tries)  # retries=1 as written; nothing granted
    causes = [a["cause"]["kind"] for a in ledger(af, "kube_app_error", run_id)]
    assert set(causes) == {"application"}, causes


WORKLOAD = "kube_workload"


def workload_pods(kube) -> list[dict]:
    return kube.pods(selector="airflow-resilience/workload=true")


def test_worker_drained_while_workload_runs_reattaches_by_uid(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id = af.trigger(WORKLOAD, conf={"marks": str(marks.path), "seconds": 25})
    started = marks.wait_for(lambda e: e["ev"] == "workload-start", timeout=120)
    worker = af.wait_for_pod(WORKLOAD, run_id, "job", 1, phase="Running", timeout=30)
    kube.evict(worker["metadata"]["name"], grace=30)  # the worker pod, not the workload pod
    assert af.wait_for_run(WORKLOAD, run_id, timeout=240) == "success"
    tries = af.try_history(WORKLOAD, run_id, "job")
    assert [t.try_number for t in tries] == [1, 2] and tries[-1].state == "success"
    assert [e["pod"] for e in marks.of("workload-start")] == [started["pod"]]  # one workload pod in total
    assert af.xcom(WORKLOAD, run_id, "job") == {"pod": started["pod"], "answer": 42}  # that pod's result
    first = ledger(af, WORKLOAD, run_id, task="job")[0]
    assert (first["cause"]["reason"], first["verdict"]) == ("k8s.eviction", "grant"), first
    assert "resuming at wait_for_job(job_id) saved by try 1" in af.task_log(WORKLOAD, run_id, "job", 2)
    assert not workload_pods(kube)  # deleted after its result was read


def test_workload_pod_evicted_gets_a_fresh_pod(cluster, marks):
    af, kube = cluster, cluster.kube
    run_id = af.trigger(WORKLOAD, conf={"marks": str(marks.path), "seconds": 15})
    first_pod = marks.wait_for(lambda e: e["ev"] == "workload-start", timeout=120)["pod"]
    kube.evict(first_pod, grace=5)
    assert af.wait_for_run(WORKLOAD, run_id, timeout=240) == "success"
    pods = [e["pod"] for e in marks.of("workload-start")]
    assert len(pods) == 2 and pods[0] == first_pod and pods[1] != first_pod, pods  # never a reattach to the evicted pod
    assert af.xcom(WORKLOAD, run_id, "job") == {"pod": pods[1], "answer": 42}
    tries = af.try_history(WORKLOAD, run_id, "job")
    assert [t.try_number for t in tries] == [1, 2] and tries[-1].max_tries == 1  # retries=0 + one infrastructure grant
    first = ledger(af, WORKLOAD, run_id, task="job")[0]
    assert (first["cause"]["kind"], first["cause"]["reason"], first["verdict"]) == ("infrastructure", "k8s.eviction", "grant"), first
    assert not workload_pods(kube)
