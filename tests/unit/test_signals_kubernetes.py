"""read_pod_disruption against a loopback fake of the Kubernetes API (GET pod, bearer token)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from loopback import LoopbackServer, Responder

from airflow_resilience.causes import Reason, classify
from airflow_resilience.signals import exit_evidence, merge, read_pod_disruption
from airflow_resilience.signals.kubernetes import _in_cluster_base, pod_evidence

TIMEOUT = 0.2
TOKEN = "tok-123"
NAMESPACE = "airflow"
POD = "worker-7f9c"
POD_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}"



@pytest.fixture
def service_account(tmp_path: Path) -> dict[str, Any]:
    """Service account files as mounted in a pod (token, namespace; no CA as the fake is plain HTTP)."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "namespace").write_text(NAMESPACE)
    return {
        "token_path": tmp_path / "token",
        "namespace_path": tmp_path / "namespace",
        "ca_path": tmp_path / "ca.crt",
        "env": {"HOSTNAME": POD},
        "timeout": TIMEOUT,
    }


def pod(conditions: list[dict[str, Any]] | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": POD, "namespace": NAMESPACE, "uid": "0f1e"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-05-09T07:35:25Z"
        metadata["deletionGracePeriodSeconds"] = 30
    status: dict[str, Any] = {"phase": "Running"}
    if conditions is not None:
        status["conditions"] = conditions
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": {}, "status": status}


def disruption(reason: str, status: str = "True") -> dict[str, Any]:
    return {
        "type": "DisruptionTarget",
        "status": status,
        "reason": reason,
        "message": "test",
        "lastTransitionTime": "2026-05-09T07:35:20Z",
    }


READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-05-09T07:00:00Z"}


def kube_api(document: Any, *, status: int = 200) -> Responder:
    """A fake API server: 401 without the bearer token, 404 for other paths, else ``document``."""

    def respond(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str | bytes]:
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, json.dumps({"kind": "Status", "reason": "Unauthorized", "code": 401})
        if method != "GET" or path != POD_PATH:
            return 404, json.dumps({"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        if isinstance(document, (str, bytes)):
            return status, document
        return status, json.dumps(document)

    return respond


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (pod([READY]), {}),
        (pod(), {}),
        (pod([READY, disruption("EvictionByEvictionAPI")]), {"k8s_disruption": "EvictionByEvictionAPI"}),
        (pod([disruption("PreemptionByScheduler")]), {"k8s_disruption": "PreemptionByScheduler"}),
        (pod([disruption("DeletionByTaintManager")]), {"k8s_disruption": "DeletionByTaintManager"}),
        (pod([disruption("DeletionByPodGC")]), {"k8s_disruption": "DeletionByPodGC"}),
        (pod([disruption("TerminationByKubelet")]), {"k8s_disruption": "TerminationByKubelet"}),
        (pod([disruption("EvictionByEvictionAPI", status="False")]), {}),
        (pod([{"type": "DisruptionTarget", "status": "True"}]), {}),  # no reason
        (pod([READY], deleting=True), {"k8s_deleting": True}),
        (
            pod([disruption("EvictionByEvictionAPI")], deleting=True),
            {"k8s_disruption": "EvictionByEvictionAPI", "k8s_deleting": True},
        ),
    ],
)
def test_pod_payload_to_evidence(
    serve: Any, service_account: dict[str, Any], document: Any, expected: dict
) -> None:
    server = serve(kube_api(document))
    assert read_pod_disruption(api_base=server.base, **service_account) == expected
    method, path, headers = server.requests[-1]
    assert (method, path) == ("GET", POD_PATH)
    assert headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("document", [[], "null", {"status": "Running"}, {"status": {"conditions": "x"}}, 42])
def test_unexpected_documents_give_nothing(document: Any) -> None:
    assert pod_evidence(document) == {}


def test_pod_name_and_namespace_arguments_win(serve: Any, service_account: dict[str, Any]) -> None:
    server = serve(kube_api(pod([disruption("DeletionByPodGC")])))
    service_account["env"] = {"HOSTNAME": "not-the-pod"}
    service_account["namespace_path"] = None
    found = read_pod_disruption(api_base=server.base, namespace=NAMESPACE, pod_name=POD, **service_account)
    assert found == {"k8s_disruption": "DeletionByPodGC"}


def test_wrong_token_gives_nothing(serve: Any, service_account: dict[str, Any]) -> None:
    server = serve(kube_api(pod([disruption("EvictionByEvictionAPI")])))
    service_account["token_path"].write_text("stale-token")
    assert read_pod_disruption(api_base=server.base, **service_account) == {}
    assert server.requests[-1][2]["Authorization"] == "Bearer stale-token"


def test_not_in_a_cluster_contacts_nothing(
    service_account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no request expected")

    monkeypatch.setattr("airflow_resilience.signals.kubernetes.request", no_network)
    service_account["env"] = {"HOSTNAME": POD}  # no KUBERNETES_SERVICE_HOST/PORT
    assert read_pod_disruption(**service_account) == {}


@pytest.mark.parametrize("missing", ["token_path", "namespace_path", "env"])
def test_missing_token_namespace_or_pod_name(
    serve: Any, service_account: dict[str, Any], tmp_path: Path, missing: str
) -> None:
    server = serve(kube_api(pod([disruption("EvictionByEvictionAPI")])))
    service_account[missing] = {} if missing == "env" else tmp_path / "absent"
    assert read_pod_disruption(api_base=server.base, **service_account) == {}
    assert server.requests == []


def test_in_cluster_base_is_https_from_env() -> None:
    assert _in_cluster_base({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == (
        "https://10.96.0.1:443"
    )
    assert _in_cluster_base({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}) == (
        "https://[fd00::1]:443"
    )
    assert _in_cluster_base({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) is None
    assert _in_cluster_base({}) is None


def test_env_base_speaks_tls(serve: Any, service_account: dict[str, Any]) -> None:
    """From the environment the reader uses https; a plain-HTTP endpoint there is no evidence."""
    server = serve(kube_api(pod([disruption("EvictionByEvictionAPI")])))
    service_account["env"] = {
        "HOSTNAME": POD,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server.port),
    }
    assert read_pod_disruption(**service_account) == {}


def test_absent_api_server(service_account: dict[str, Any], closed_port: int) -> None:
    assert read_pod_disruption(api_base=f"http://127.0.0.1:{closed_port}", **service_account) == {}


def test_slow_api_server_times_out(serve: Any, service_account: dict[str, Any]) -> None:
    def slow(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str]:
        server.release.wait(5)
        return 200, json.dumps(pod([disruption("EvictionByEvictionAPI")]))

    server = serve(slow)
    started = time.monotonic()
    assert read_pod_disruption(api_base=server.base, **service_account) == {}
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, json.dumps(pod([disruption("EvictionByEvictionAPI")]))),
        (403, json.dumps({"kind": "Status", "reason": "Forbidden", "code": 403})),
        (200, "<html>not json"),
        (200, b"\xff\xfe\x00garbage"),
        (200, ""),
    ],
)
def test_errors_and_garbage_give_nothing(
    serve: Any, service_account: dict[str, Any], status: int, body: Any
) -> None:
    server = serve(kube_api(body, status=status))
    assert read_pod_disruption(api_base=server.base, **service_account) == {}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (pod([disruption("EvictionByEvictionAPI")]), Reason.K8S_EVICTION),
        (pod([disruption("PreemptionByScheduler")]), Reason.K8S_PREEMPTION),
        (pod([disruption("DeletionByTaintManager")]), Reason.K8S_TAINT),
        (pod([disruption("TerminationByKubelet")]), Reason.NODE_DRAIN),
        (pod([READY], deleting=True), Reason.USER_DELETED_POD),
        (pod([READY]), Reason.SIGNAL_SIGKILL),
    ],
)
def test_end_to_end_classification(
    serve: Any, service_account: dict[str, Any], document: Any, reason: Reason
) -> None:
    """The runner died by SIGKILL; the pod's condition, when there is one, says why."""
    server = serve(kube_api(document))
    evidence = merge(exit_evidence(-9), read_pod_disruption(api_base=server.base, **service_account))
    assert classify(evidence).reason is reason
