"""Cloud notice readers against loopback fakes of the AWS IMDSv2, GCE metadata and Azure IMDS services.

Every reader is called with an explicit 127.0.0.1 base; an autouse guard fails any other request, so
the documented link-local metadata addresses are never contacted from a test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from loopback import LoopbackServer, Responder

from airflow_resilience.causes import Reason, classify
from airflow_resilience.signals import (
    merge,
    read_aws_spot,
    read_azure_scheduled_events,
    read_cloud_notices,
    read_gcp_preemption,
)
from airflow_resilience.signals.cloud import azure_events_evidence

TIMEOUT = 0.2



# --- fakes of the documented services ----------------------------------------------------------------

AWS_TOKEN = "AQAEAFake-token=="


def aws_imds(
    instance_action: Any = None, *, action_status: int | None = None, token_status: int = 200
) -> Responder:
    """IMDSv2: PUT /latest/api/token (TTL header required), then GETs carrying the issued token (else 401).

    ``instance_action=None`` -> 404 (no interruption scheduled), as the documentation describes.
    """

    def respond(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str | bytes]:
        if path == "/latest/api/token":
            if method != "PUT":
                return 405, ""
            if headers.get("X-aws-ec2-metadata-token-ttl-seconds") != "21600":
                return 400, ""
            return token_status, AWS_TOKEN
        if headers.get("X-aws-ec2-metadata-token") != AWS_TOKEN:
            return 401, ""
        if path == "/latest/meta-data/spot/instance-action":
            if instance_action is None:
                return 404, "<?xml version='1.0'?><title>404 - Not Found</title>"
            raw = isinstance(instance_action, (str, bytes))
            return action_status or 200, instance_action if raw else json.dumps(instance_action)
        if path == "/latest/meta-data/events/recommendations/rebalance":
            return 200, json.dumps({"noticeTime": "2026-05-09T07:35:00Z"})
        return 404, ""

    return respond


def gcp_metadata(preempted: str | None = "FALSE", maintenance: str | None = "NONE") -> Responder:
    """GCE metadata server: ``Metadata-Flavor: Google`` required (else 403); ``None`` -> 500."""

    def respond(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str | bytes]:
        if headers.get("Metadata-Flavor") != "Google":
            return 403, "Missing Metadata-Flavor:Google header."
        values = {
            "/computeMetadata/v1/instance/preempted": preempted,
            "/computeMetadata/v1/instance/maintenance-event": maintenance,
        }
        if method != "GET" or path not in values:
            return 404, ""
        value = values[path]
        return (500, "") if value is None else (200, value)

    return respond


def azure_document(*events: dict[str, Any]) -> dict[str, Any]:
    return {"DocumentIncarnation": 2, "Events": list(events)}


def azure_event(event_type: str, *resources: str, status: str = "Scheduled") -> dict[str, Any]:
    return {
        "EventId": f"{event_type}-0001",
        "EventType": event_type,
        "ResourceType": "VirtualMachine",
        "Resources": list(resources or ["airflow-worker-1"]),
        "EventStatus": status,
        "NotBefore": "Sat, 09 May 2026 07:40:00 GMT",
        "Description": "",
        "EventSource": "Platform",
        "DurationInSeconds": -1,
    }


def azure_imds(document: Any, *, status: int = 200) -> Responder:
    """Azure IMDS: ``Metadata: true`` and ``api-version`` required (else 400)."""

    def respond(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str | bytes]:
        url = urlsplit(path)
        if headers.get("Metadata") != "true":
            return 400, json.dumps({"error": "Bad request. Required metadata header not specified"})
        version = parse_qs(url.query).get("api-version")
        if url.path != "/metadata/scheduledevents" or version != ["2020-07-01"]:
            return 400, json.dumps({"error": "Bad request"})
        return status, document if isinstance(document, (str, bytes)) else json.dumps(document)

    return respond


# --- AWS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_action", "expected"),
    [
        (None, {}),
        ({"action": "terminate", "time": "2026-05-09T07:37:00Z"}, {"cloud_notice": "aws:terminate"}),
        ({"action": "stop", "time": "2026-05-09T07:37:00Z"}, {"cloud_notice": "aws:stop"}),
        ({"action": "hibernate", "time": "2026-05-09T07:37:00Z"}, {"cloud_notice": "aws:hibernate"}),
        ({"action": "reboot", "time": "2026-05-09T07:37:00Z"}, {}),
        ({"time": "2026-05-09T07:37:00Z"}, {}),
        (["terminate"], {}),
        ("not json", {}),
    ],
)
def test_aws_instance_action(serve: Any, instance_action: Any, expected: dict) -> None:
    server = serve(aws_imds(instance_action))
    assert read_aws_spot(server.base, timeout=TIMEOUT) == expected


def test_aws_sends_the_imdsv2_token(serve: Any) -> None:
    server = serve(aws_imds({"action": "terminate", "time": "2026-05-09T07:37:00Z"}))
    assert read_aws_spot(server.base, timeout=TIMEOUT) == {"cloud_notice": "aws:terminate"}
    (put, put_path, put_headers), (get, get_path, get_headers) = server.requests
    assert (put, put_path) == ("PUT", "/latest/api/token")
    assert put_headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert (get, get_path) == ("GET", "/latest/meta-data/spot/instance-action")
    assert get_headers["X-aws-ec2-metadata-token"] == AWS_TOKEN


def test_aws_fake_rejects_requests_without_token(serve: Any) -> None:
    """The fake is strict, so the test above proves the reader sends the token."""
    server = serve(aws_imds({"action": "terminate", "time": "2026-05-09T07:37:00Z"}))
    response = httpx.get(f"{server.base}/latest/meta-data/spot/instance-action", trust_env=False)
    assert response.status_code == 401


def test_aws_rebalance_recommendation_is_not_an_interruption(serve: Any) -> None:
    server = serve(aws_imds(None))
    assert read_aws_spot(server.base, timeout=TIMEOUT) == {}
    assert all("rebalance" not in path for _, path, _ in server.requests)


@pytest.mark.parametrize("token_status", [403, 404, 500])
def test_aws_without_a_token_gives_nothing(serve: Any, token_status: int) -> None:
    server = serve(aws_imds({"action": "terminate", "time": "t"}, token_status=token_status))
    assert read_aws_spot(server.base, timeout=TIMEOUT) == {}
    assert [method for method, _, _ in server.requests] == ["PUT"]


def test_aws_500_gives_nothing(serve: Any) -> None:
    server = serve(aws_imds({"action": "terminate", "time": "t"}, action_status=500))
    assert read_aws_spot(server.base, timeout=TIMEOUT) == {}


# --- Google Cloud ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preempted", "maintenance", "expected"),
    [
        ("FALSE", "NONE", {}),
        ("TRUE", "NONE", {"cloud_notice": "gcp:preempted"}),
        ("TRUE\n", "TERMINATE_ON_HOST_MAINTENANCE", {"cloud_notice": "gcp:preempted"}),
        ("FALSE", "TERMINATE_ON_HOST_MAINTENANCE", {"cloud_notice": "gcp:maintenance"}),
        ("FALSE", "MIGRATE_ON_HOST_MAINTENANCE", {"cloud_notice": "gcp:maintenance"}),
        (None, "TERMINATE_ON_HOST_MAINTENANCE", {"cloud_notice": "gcp:maintenance"}),
        ("TRUE", None, {"cloud_notice": "gcp:preempted"}),
        ("FALSE", None, {}),
        ("FALSE", "", {}),
        ("garbage", "NONE", {}),
    ],
)
def test_gcp_preempted_and_maintenance(serve: Any, preempted: Any, maintenance: Any, expected: dict) -> None:
    server = serve(gcp_metadata(preempted, maintenance))
    assert read_gcp_preemption(server.base, timeout=TIMEOUT) == expected
    assert all(headers["Metadata-Flavor"] == "Google" for _, _, headers in server.requests)


def test_gcp_preempted_wins_without_reading_maintenance(serve: Any) -> None:
    server = serve(gcp_metadata("TRUE", "TERMINATE_ON_HOST_MAINTENANCE"))
    read_gcp_preemption(server.base, timeout=TIMEOUT)
    assert [path for _, path, _ in server.requests] == ["/computeMetadata/v1/instance/preempted"]


def test_gcp_fake_rejects_requests_without_flavor_header(serve: Any) -> None:
    server = serve(gcp_metadata("TRUE"))
    response = httpx.get(f"{server.base}/computeMetadata/v1/instance/preempted", trust_env=False)
    assert response.status_code == 403


# --- Azure -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (azure_document(), {}),
        (azure_document(azure_event("Preempt")), {"cloud_notice": "azure:Preempt"}),
        (azure_document(azure_event("Terminate", status="Started")), {"cloud_notice": "azure:Terminate"}),
        (
            azure_document(azure_event("Reboot"), azure_event("Terminate")),
            {"cloud_notice": "azure:Terminate"},
        ),
        (azure_document(azure_event("Freeze"), azure_event("Redeploy")), {"cloud_notice": "azure:Freeze"}),
        (azure_document({"EventId": "x"}, azure_event("Reboot")), {"cloud_notice": "azure:Reboot"}),
        ({"DocumentIncarnation": 0}, {}),
        ({"Events": "Preempt"}, {}),
        ([azure_event("Preempt")], {}),
        ("{not json", {}),
    ],
)
def test_azure_scheduled_events(serve: Any, document: Any, expected: dict) -> None:
    server = serve(azure_imds(document))
    assert read_azure_scheduled_events(server.base, timeout=TIMEOUT) == expected
    _, path, headers = server.requests[-1]
    assert headers["Metadata"] == "true"
    assert path == "/metadata/scheduledevents?api-version=2020-07-01"


@pytest.mark.parametrize(
    ("resource_name", "expected"),
    [
        (None, {"cloud_notice": "azure:Preempt"}),
        ("airflow-worker-2", {"cloud_notice": "azure:Reboot"}),
        ("AIRFLOW-WORKER-2", {"cloud_notice": "azure:Reboot"}),
        ("airflow-worker-1", {"cloud_notice": "azure:Preempt"}),
        ("airflow-worker-3", {}),
    ],
)
def test_azure_resource_filter(serve: Any, resource_name: str | None, expected: dict) -> None:
    document = azure_document(
        azure_event("Preempt", "airflow-worker-1"),
        azure_event("Reboot", "airflow-worker-2", "airflow-worker-4"),
    )
    server = serve(azure_imds(document))
    assert read_azure_scheduled_events(server.base, resource_name=resource_name, timeout=TIMEOUT) == expected


def test_azure_events_without_resources_never_match_a_filter() -> None:
    document = azure_document({"EventType": "Preempt"})
    assert azure_events_evidence(document) == {"cloud_notice": "azure:Preempt"}
    assert azure_events_evidence(document, "vm") == {}


def test_azure_fake_rejects_requests_without_metadata_header(serve: Any) -> None:
    server = serve(azure_imds(azure_document(azure_event("Preempt"))))
    response = httpx.get(f"{server.base}/metadata/scheduledevents?api-version=2020-07-01", trust_env=False)
    assert response.status_code == 400


# --- off unless enabled ------------------------------------------------------------------------------


@pytest.fixture
def no_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unexpected request {args}")

    monkeypatch.setattr("airflow_resilience.signals.cloud.request", refuse)


@pytest.mark.usefixtures("no_requests")
@pytest.mark.parametrize(
    "call",
    [
        lambda: read_aws_spot(),
        lambda: read_gcp_preemption(),
        lambda: read_azure_scheduled_events(),
        lambda: read_cloud_notices(),
        lambda: read_cloud_notices(("aws", "gcp", "azure"), {}),
    ],
)
def test_readers_are_off_unless_enabled(call: Callable[[], dict]) -> None:
    assert call() == {}


def test_cloud_notices_query_only_listed_providers_with_a_base(serve: Any) -> None:
    aws = serve(aws_imds({"action": "stop", "time": "t"}))
    gcp = serve(gcp_metadata("TRUE"))
    azure = serve(azure_imds(azure_document(azure_event("Preempt"))))
    bases = {"aws": aws.base, "gcp": gcp.base, "azure": azure.base}

    assert read_cloud_notices(("gcp",), bases, timeout=TIMEOUT) == {"cloud_notice": "gcp:preempted"}
    assert aws.requests == [] and azure.requests == []

    assert read_cloud_notices(("azure", "aws"), bases, timeout=TIMEOUT) == {"cloud_notice": "azure:Preempt"}
    assert aws.requests == []  # the first notice wins

    assert read_cloud_notices("aws", bases, timeout=TIMEOUT) == {"cloud_notice": "aws:stop"}
    assert read_cloud_notices(("aws",), {"gcp": gcp.base}, timeout=TIMEOUT) == {}  # aws not enabled


def test_cloud_notices_skip_quiet_and_unknown_providers(serve: Any) -> None:
    aws = serve(aws_imds(None))
    azure = serve(azure_imds(azure_document(azure_event("Redeploy"))))
    bases = {"aws": aws.base, "azure": azure.base, "oracle": aws.base}
    found = read_cloud_notices(("oracle", "aws", "azure"), bases, timeout=TIMEOUT)
    assert found == {"cloud_notice": "azure:Redeploy"}


# --- degrades to {} ----------------------------------------------------------------------------------

READERS: dict[str, Callable[..., dict]] = {
    "aws": read_aws_spot,
    "gcp": read_gcp_preemption,
    "azure": read_azure_scheduled_events,
}


@pytest.mark.parametrize("provider", sorted(READERS))
def test_absent_metadata_service(provider: str, closed_port: int) -> None:
    assert READERS[provider](f"http://127.0.0.1:{closed_port}", timeout=TIMEOUT) == {}


@pytest.mark.parametrize("provider", sorted(READERS))
def test_slow_metadata_service_times_out(serve: Any, provider: str) -> None:
    def slow(method: str, path: str, headers: Any, server: LoopbackServer) -> tuple[int, str]:
        server.release.wait(5)
        return 200, "TRUE"

    server = serve(slow)
    started = time.monotonic()
    assert READERS[provider](server.base, timeout=TIMEOUT) == {}
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("provider", sorted(READERS))
@pytest.mark.parametrize(("status", "body"), [(500, "TRUE"), (200, "\x00\x01garbage"), (200, b"\xff\xfe")])
def test_errors_and_garbage(serve: Any, provider: str, status: int, body: Any) -> None:
    server = serve(lambda method, path, headers, srv: (status, body))
    assert READERS[provider](server.base, timeout=TIMEOUT) == {}


# --- end to end --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "responder", "reason"),
    [
        ("aws", aws_imds({"action": "terminate", "time": "t"}), Reason.SPOT_INTERRUPTION),
        ("aws", aws_imds(None), Reason.SIGNAL_SIGTERM),
        ("gcp", gcp_metadata("TRUE"), Reason.SPOT_INTERRUPTION),
        ("gcp", gcp_metadata("FALSE", "TERMINATE_ON_HOST_MAINTENANCE"), Reason.MAINTENANCE),
        ("azure", azure_imds(azure_document(azure_event("Preempt"))), Reason.SPOT_INTERRUPTION),
        ("azure", azure_imds(azure_document(azure_event("Reboot"))), Reason.MAINTENANCE),
    ],
)
def test_end_to_end_classification(serve: Any, provider: str, responder: Responder, reason: Reason) -> None:
    """The task received SIGTERM; a cloud notice, when there is one, says why."""
    server = serve(responder)
    notice = read_cloud_notices((provider,), {provider: server.base}, timeout=TIMEOUT)
    evidence = merge({"received_signal": 15, "exception": "AirflowTaskTerminated"}, notice)
    assert classify(evidence).reason is reason
