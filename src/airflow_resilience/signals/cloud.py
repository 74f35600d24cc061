"""Cloud interruption notices from the instance metadata services of AWS, Google Cloud and Azure.

**Off unless enabled.** The documented addresses (``169.254.169.254``, ``metadata.google.internal``)
are link-local metadata services; a reader contacts one only when asked explicitly: with ``enabled=True``
(use the documented address) or with an explicit ``base`` URL (tests pass a loopback one).
Called with neither, a reader returns ``{}`` without any network traffic.

Payloads (each reader's docstring cites its source):

* AWS: IMDSv2 ``spot/instance-action`` -> ``{"cloud_notice": "aws:terminate"|"aws:stop"|"aws:hibernate"}``;
* Google Cloud: ``instance/preempted`` and ``instance/maintenance-event`` ->
  ``{"cloud_notice": "gcp:preempted"|"gcp:maintenance"}``;
* Azure: Scheduled Events -> ``{"cloud_notice": "azure:<EventType>"}``.

Every reader returns ``{}`` (logged at debug) on any error, timeout, unexpected status or payload.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_resilience.signals._http import DEFAULT_TIMEOUT, ok_json, ok_text, request

log = logging.getLogger(__name__)

AWS_IMDS_BASE = "http://169.254.169.254"
GCP_METADATA_BASE = "http://metadata.google.internal"
AZURE_IMDS_BASE = "http://169.254.169.254"

#: Documented values of ``action`` in the AWS ``spot/instance-action`` document.
AWS_SPOT_ACTIONS = frozenset({"terminate", "stop", "hibernate"})
#: Azure event types that end the VM (documented types: Freeze, Reboot, Redeploy, Preempt, Terminate);
#: preferred over the others when several events are listed.
AZURE_ENDING_EVENTS = ("Preempt", "Terminate")
#: Shape of a ``maintenance-event`` value (``NONE``, ``MIGRATE_ON_HOST_MAINTENANCE``, ...); anything else
#: is not a metadata-server answer and is ignored.
_MAINTENANCE_VALUE = re.compile(r"[A-Z][A-Z0-9_]*")
#: Provider names accepted by :func:`read_cloud_notices`.
PROVIDERS = ("aws", "gcp", "azure")


def _base(provider: str, base: str | None, enabled: bool, default: str) -> str | None:
    if base:
        return base.rstrip("/")
    if enabled:
        return default
    log.debug("%s: metadata reader not enabled (pass enabled=True or a base URL)", provider)
    return None


def read_aws_spot(
    base: str | None = None, *, enabled: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """An EC2 Spot interruption notice, read with IMDSv2.

    Source: "Spot Instance interruption notices"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html) and
    "Use IMDSv2"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html):

    1. ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: 21600`` -> a session token;
    2. ``GET /latest/meta-data/spot/instance-action`` with ``X-aws-ec2-metadata-token: <token>``:
       ``200 {"action": "terminate"|"stop"|"hibernate", "time": "2017-09-18T08:22:00Z"}`` when the
       instance is marked for interruption, ``404`` otherwise.

    -> ``{"cloud_notice": "aws:<action>"}``. The rebalance recommendation
    (``events/recommendations/rebalance``) is an early hint, not an interruption, and is not read.
    ``base=None`` and ``enabled=False`` (the default) -> ``{}`` without contacting anything.
    """
    try:
        root = _base("aws", base, enabled, AWS_IMDS_BASE)
        if root is None:
            return {}
        token = ok_text(
            request(
                "PUT",
                f"{root}/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
                timeout=timeout,
                source="aws",
            ),
            source="aws",
        )
        token = token.strip() if token else None
        if not token:
            return {}
        document = ok_json(
            request(
                "GET",
                f"{root}/latest/meta-data/spot/instance-action",
                headers={"X-aws-ec2-metadata-token": token},
                timeout=timeout,
                source="aws",
            ),
            source="aws",
        )
        action = document.get("action") if isinstance(document, Mapping) else None
        if action not in AWS_SPOT_ACTIONS:
            if document is not None:
                log.debug("aws: unexpected instance-action document: %r", document)
            return {}
        return {"cloud_notice": f"aws:{action}"}
    except Exception as exc:  # noqa: BLE001 - a reader never raises
        log.debug("aws: unexpected error: %s: %s", type(exc).__name__, exc)
        return {}


def read_gcp_preemption(
    base: str | None = None, *, enabled: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """A Compute Engine preemption or host-maintenance notice from the metadata server.

    Source: "Predefined metadata keys"
    (https://cloud.google.com/compute/docs/metadata/predefined-metadata-keys), "Detect if a VM was
    preempted" (https://cloud.google.com/compute/docs/instances/create-use-preemptible)
    and "Get live migration notices"
    (https://cloud.google.com/compute/docs/metadata/getting-live-migration-notice); every request
    carries ``Metadata-Flavor: Google``:

    * ``GET /computeMetadata/v1/instance/preempted`` -> ``TRUE`` or ``FALSE``;
    * ``GET /computeMetadata/v1/instance/maintenance-event`` -> ``NONE``,
      ``MIGRATE_ON_HOST_MAINTENANCE`` or ``TERMINATE_ON_HOST_MAINTENANCE``.

    -> ``{"cloud_notice": "gcp:preempted"}`` when preempted (it wins; the maintenance key is then not
    read), else ``{"cloud_notice": "gcp:maintenance"}`` for any maintenance event other than ``NONE``
    (an upper-case enum value; a body of another shape is not evidence).
    ``base=None`` and ``enabled=False`` (the default) -> ``{}`` without contacting anything.
    """
    try:
        root = _base("gcp", base, enabled, GCP_METADATA_BASE)
        if root is None:
            return {}
        headers = {"Metadata-Flavor": "Google"}
        preempted = ok_text(
            request(
                "GET",
                f"{root}/computeMetadata/v1/instance/preempted",
                headers=headers,
                timeout=timeout,
                source="gcp",
            ),
            source="gcp",
        )
        if preempted is not None and preempted.strip().upper() == "TRUE":
            return {"cloud_notice": "gcp:preempted"}
        event = ok_text(
            request(
                "GET",
                f"{root}/computeMetadata/v1/instance/maintenance-event",
                headers=headers,
                timeout=timeout,
                source="gcp",
            ),
            source="gcp",
        )
        event = event.strip() if event is not None else ""
        if _MAINTENANCE_VALUE.fullmatch(event) and event != "NONE":
            log.debug("gcp: maintenance-event %s", event)
            return {"cloud_notice": "gcp:maintenance"}
        return {}
    except Exception as exc:  # noqa: BLE001 - a reader never raises
        log.debug("gcp: unexpected error: %s: %s", type(exc).__name__, exc)
        return {}


def azure_events_evidence(document: Any, resource_name: str | None = None) -> dict[str, Any]:
    """Evidence from a decoded Scheduled Events document; ``{}`` for anything unexpected.

    Events of another resource are skipped when ``resource_name`` is given (compared case-insensitively,
    as Azure resource names are). ``Preempt``/``Terminate`` events are preferred over the others.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("Events"), list):
        return {}
    types: list[str] = []
    for event in document["Events"]:
        if not isinstance(event, Mapping):
            continue
        event_type = event.get("EventType")
        if not isinstance(event_type, str) or not event_type:
            continue
        if resource_name is not None:
            resources = event.get("Resources")
            listed = resources if isinstance(resources, list) else []
            names = {r.casefold() for r in listed if isinstance(r, str)}
            if resource_name.casefold() not in names:
                continue
        types.append(event_type)
    chosen = next((t for t in types if t in AZURE_ENDING_EVENTS), types[0] if types else None)
    return {"cloud_notice": f"azure:{chosen}"} if chosen else {}


def read_azure_scheduled_events(
    base: str | None = None,
    *,
    resource_name: str | None = None,
    enabled: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """An Azure Scheduled Event for this VM.

    Source: "Azure Metadata Service: Scheduled Events for Linux VMs"
    (https://learn.microsoft.com/azure/virtual-machines/linux/scheduled-events):
    ``GET /metadata/scheduledevents?api-version=2020-07-01`` with ``Metadata: true`` ->

    ``{"DocumentIncarnation": 1, "Events": [{"EventId": "...", "EventType": "Preempt"|"Terminate"|"Reboot"|
    "Redeploy"|"Freeze", "ResourceType": "VirtualMachine", "Resources": ["vmname"], "EventStatus":
    "Scheduled"|"Started", "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT", ...}]}``

    -> ``{"cloud_notice": "azure:<EventType>"}`` of the first ``Preempt``/``Terminate`` event, else of
    the first event; only events listing ``resource_name`` when it is given. No events -> ``{}``.
    ``base=None`` and ``enabled=False`` (the default) -> ``{}`` without contacting anything.
    """
    try:
        root = _base("azure", base, enabled, AZURE_IMDS_BASE)
        if root is None:
            return {}
        document = ok_json(
            request(
                "GET",
                f"{root}/metadata/scheduledevents?api-version=2020-07-01",
                headers={"Metadata": "true"},
                timeout=timeout,
                source="azure",
            ),
            source="azure",
        )
        return azure_events_evidence(document, resource_name)
    except Exception as exc:  # noqa: BLE001 - a reader never raises
        log.debug("azure: unexpected error: %s: %s", type(exc).__name__, exc)
        return {}


def read_cloud_notices(
    providers: Iterable[str] = PROVIDERS,
    bases: Mapping[str, str] | None = None,
    *,
    enabled: bool = False,
    azure_resource_name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """The first cloud notice among ``providers`` (in the order given), or ``{}``.

    A provider is queried only if it is listed in ``providers`` **and** either has a base URL in
    ``bases`` or ``enabled=True`` (then its documented metadata address is used). So the default call
    contacts nothing; a deployment enables the providers it runs on, e.g.
    ``read_cloud_notices(("aws",), enabled=True)``. Unknown provider names are ignored (logged at debug).
    """
    bases = bases or {}
    if isinstance(providers, str):
        providers = (providers,)
    try:
        for provider in providers:
            base = bases.get(provider)
            if base is None and not enabled:
                log.debug("%s: not queried (no base URL and not enabled)", provider)
                continue
            if provider == "aws":
                found = read_aws_spot(base, enabled=enabled, timeout=timeout)
            elif provider == "gcp":
                found = read_gcp_preemption(base, enabled=enabled, timeout=timeout)
            elif provider == "azure":
                found = read_azure_scheduled_events(
                    base, resource_name=azure_resource_name, enabled=enabled, timeout=timeout
                )
            else:
                log.debug("unknown cloud provider %r ignored", provider)
                continue
            if found:
                return found
    except Exception as exc:  # noqa: BLE001 - a reader never raises (e.g. providers is not iterable)
        log.debug("cloud: unexpected error: %s: %s", type(exc).__name__, exc)
    return {}
