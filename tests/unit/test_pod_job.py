"""PodJob (ResumablePodOperator's ExternalJob): one pod per token, reattached only by UID, a disruption told
apart from a failure, the result from the termination message. A fake API stands in for the cluster (the real
one is in tests/airflow/test_kubernetes_airflow.py)."""

from __future__ import annotations

import copy
import itertools

import pytest

pytest.importorskip("kubernetes")
pytest.importorskip("airflow")

from kubernetes.client.rest import ApiException  # noqa: E402

from airflow_resilience.providers.kubernetes import FINALIZER, TOKEN_LABEL, PodJob, pod_name  # noqa: E402

TOKEN = "airflow-" + "ab" * 24


class FakeCore:
    def __init__(self) -> None:
        self.pods: dict[str, dict] = {}
        self.uids = (f"uid-{i}" for i in itertools.count(1))
        self.creates = 0
        self.api_client = self

    @staticmethod
    def sanitize_for_serialization(obj):
        return copy.deepcopy(obj)

    def create_namespaced_pod(self, namespace, body):
        self.creates += 1
        name = body["metadata"]["name"]
        if name in self.pods:
            raise ApiException(status=409)
        pod = copy.deepcopy(body)
        pod["metadata"]["uid"] = next(self.uids)
        pod["status"] = {"phase": "Pending"}
        self.pods[name] = pod
        return pod

    def read_namespaced_pod(self, name, namespace):
        if name not in self.pods:
            raise ApiException(status=404)
        return self.pods[name]

    def patch_namespaced_pod(self, name, namespace, ops):
        pod = self.pods[name]
        assert ops[0] == {"op": "test", "path": "/metadata/uid", "value": pod["metadata"]["uid"]}
        pod["metadata"]["finalizers"].remove(FINALIZER)

    def delete_namespaced_pod(self, name, namespace, body=None):
        if name not in self.pods:
            raise ApiException(status=404)
        del self.pods[name]


def job(core) -> PodJob:
    return PodJob(core, "jobs", {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "base"}]}}, "Train_Step")


def test_submit_names_the_pod_after_the_token_and_holds_it() -> None:
    core = FakeCore()
    first = job(core).submit(TOKEN)
    pod = core.pods[first["name"]]
    assert first == {"namespace": "jobs", "name": pod_name("Train_Step", TOKEN), "uid": "uid-1"}
    assert len(first["name"]) <= 63 and first["name"].startswith("train-step-")
    assert pod["metadata"]["labels"] == {"a": "b", TOKEN_LABEL: TOKEN} and pod["metadata"]["finalizers"] == [FINALIZER]


def test_a_second_submit_with_the_token_returns_the_first_pod() -> None:
    core = FakeCore()
    first = job(core).submit(TOKEN)
    assert job(core).submit(TOKEN) == first and len(core.pods) == 1
    assert job(core).find(TOKEN) == first
    assert job(core).find("airflow-" + "cd" * 24) is None


def test_a_pod_of_that_name_from_another_token_is_never_ours() -> None:
    core = FakeCore()
    name = pod_name("Train_Step", TOKEN)
    core.pods[name] = {"metadata": {"name": name, "uid": "other", "labels": {TOKEN_LABEL: "someone-else"}}, "status": {}}
    assert job(core).find(TOKEN) is None
    with pytest.raises(RuntimeError, match="was not created with token"):
        job(core).submit(TOKEN)


def set_status(core, name, **status):
    core.pods[name]["status"] = status


@pytest.mark.parametrize(
    ("status", "state", "result", "message"),
    [
        ({"phase": "Running"}, "running", None, ""),
        ({"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": '{"answer": 42}'}}}]},
         "succeeded", {"answer": 42}, ""),
        ({"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": "plain text"}}}]},
         "succeeded", "plain text", ""),
        ({"phase": "Succeeded"}, "succeeded", None, ""),
        ({"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]},
         "failed", None, "Error exit code 3"),
        ({"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]},
         "failed", {"disruption": "EvictionByEvictionAPI"}, "DisruptionTarget reason=EvictionByEvictionAPI"),
    ],
)
def test_status(status, state, result, message) -> None:
    core = FakeCore()
    ident = job(core).submit(TOKEN)
    set_status(core, ident["name"], **status)
    got = job(core).status(ident)
    assert (got.state, got.result) == (state, result) and message in got.message


def test_status_checks_the_uid() -> None:
    core = FakeCore()
    ident = job(core).submit(TOKEN)
    core.pods[ident["name"]]["metadata"]["uid"] = "a-new-pod"
    set_status(core, ident["name"], phase="Succeeded")
    got = job(core).status(ident)
    assert got.state == "failed" and "not ours" in got.message


def test_gone_is_failed_and_delete_releases() -> None:
    core = FakeCore()
    ident = job(core).submit(TOKEN)
    job(core).release(ident)
    assert core.pods[ident["name"]]["metadata"]["finalizers"] == []
    job(core).delete(ident)
    assert job(core).status(ident).state == "failed" and "gone" in job(core).status(ident).message
    job(core).delete(ident)  # gone already: no error


class DisruptedJob:
    """A workload pod the API reports disrupted (DisruptionTarget) from the first poll on."""

    def __init__(self) -> None:
        self.deleted: list[dict] = []

    def status(self, job_id):
        from airflow_resilience.resumable import JobStatus

        return JobStatus("failed", message="disrupted: DisruptionTarget reason=EvictionByEvictionAPI",
                         result={"disruption": "EvictionByEvictionAPI"})

    def delete(self, job_id) -> None:
        self.deleted.append(job_id)

    def release(self, job_id) -> None:
        raise AssertionError("a disrupted pod stays held for the next try")


@pytest.mark.parametrize("submitted_this_try", [True, False], ids=["submitted-by-this-try", "resumed-from-an-earlier-try"])
def test_a_disruption_of_the_pod_this_try_submitted_hands_the_try_back(monkeypatch, submitted_this_try) -> None:
    # CI saw the race: the pod was evicted before the submitting try's first poll, and that try made a fresh
    # pod itself instead of handing back (no infrastructure grant in the record, one try in all).
    from airflow.sdk.exceptions import AirflowException

    import airflow_resilience.airflow.execution as execution
    from airflow_resilience.providers.kubernetes import ResumablePodOperator

    op = ResumablePodOperator(task_id="job", image="img", poll_interval=0)
    fake = DisruptedJob()
    handed_back, fresh = [], []
    monkeypatch.setattr(op, "job", lambda context: fake)
    monkeypatch.setattr(op, "execute", lambda context: fresh.append(context) or "fresh pod's result")
    monkeypatch.setattr(execution, "hand_back", lambda context, cause: handed_back.append(cause))
    op.submitted_this_try = submitted_this_try
    job_id = {"namespace": "jobs", "name": "job-1", "uid": "uid-1"}
    if submitted_this_try:
        with pytest.raises(AirflowException, match="workload pod failed: disrupted"):
            op.wait_for_job({"ti": None}, job_id)
        assert [(c.kind, c.reason) for c in handed_back] == [("infrastructure", "k8s.eviction")]
        assert fresh == [] and fake.deleted == []  # held for the next try to read
    else:
        assert op.wait_for_job({"ti": None}, job_id) == "fresh pod's result"
        assert handed_back == [] and fake.deleted == [job_id] and len(fresh) == 1
