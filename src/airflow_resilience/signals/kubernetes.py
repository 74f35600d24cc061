"""Kubernetes evidence: the ``DisruptionTarget`` condition and deletion timestamp of the task's own pod.

Reads the pod with the in-cluster API, ``GET /api/v1/namespaces/{namespace}/pods/{name}`` (the ``Pod``
object, https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/), authenticated
with the pod's service account token, as described in "Accessing the Kubernetes API from a Pod"
(https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/):

* API server: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``;
* token, CA bundle and namespace: ``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}``;
* pod name: ``$HOSTNAME`` (the pod name unless the pod spec sets ``hostname``).

From the ``Pod`` it reads:

* ``status.conditions[]`` with ``type: DisruptionTarget`` and ``status: "True"``: its ``reason`` is one
  of the documented "Pod disruption conditions"
  (https://kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-conditions):
  ``EvictionByEvictionAPI``, ``PreemptionByScheduler``, ``DeletionByTaintManager``, ``DeletionByPodGC``,
  ``TerminationByKubelet`` -> ``{"k8s_disruption": reason}``;
* ``metadata.deletionTimestamp`` set -> ``{"k8s_deleting": True}``;
* with a disruption, the pod's node (``GET /api/v1/nodes/{spec.nodeName}``): ``spec.unschedulable`` ->
  ``{"k8s_node_cordoned": True}`` (``kubectl drain`` cordons the node before it evicts).

The service account needs ``get`` on ``pods`` in its namespace (RBAC); without it the API answers 403 and
the reader returns ``{}``. ``get`` on ``nodes`` (a ClusterRole) tells a drain from a lone eviction; without
it the node is not read and a drain reads as ``k8s.eviction``.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_resilience.signals._http import DEFAULT_TIMEOUT, ok_json, request

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_PATH = f"{SERVICE_ACCOUNT_DIR}/token"
CA_PATH = f"{SERVICE_ACCOUNT_DIR}/ca.crt"
NAMESPACE_PATH = f"{SERVICE_ACCOUNT_DIR}/namespace"


def _read_text(path: str | os.PathLike[str] | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("kubernetes: cannot read %s: %s", path, exc)
        return None
    return text or None


def _in_cluster_base(env: Mapping[str, str]) -> str | None:
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return f"https://{host}:{port}"


def _verify(base: str, ca_path: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    if not base.lower().startswith("https:") or ca_path is None or not os.path.exists(ca_path):
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_path))
    except (OSError, ssl.SSLError) as exc:
        log.debug("kubernetes: unusable CA bundle %s: %s", ca_path, exc)
        return True


def pod_evidence(pod: Any) -> dict[str, Any]:
    """Evidence from a ``Pod`` object (a decoded JSON mapping); ``{}`` for anything else."""
    if not isinstance(pod, Mapping):
        return {}
    found: dict[str, Any] = {}
    status = pod.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    if isinstance(conditions, list):
        for condition in conditions:
            if (
                isinstance(condition, Mapping)
                and condition.get("type") == "DisruptionTarget"
                and condition.get("status") == "True"
                and isinstance(condition.get("reason"), str)
                and condition["reason"]
            ):
                found["k8s_disruption"] = condition["reason"]
                break
    metadata = pod.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("deletionTimestamp"):
        found["k8s_deleting"] = True
    return found


def read_pod_disruption(
    api_base: str | None = None,
    namespace: str | None = None,
    pod_name: str | None = None,
    token_path: str | os.PathLike[str] | None = TOKEN_PATH,
    ca_path: str | os.PathLike[str] | None = CA_PATH,
    env: Mapping[str, str] = os.environ,
    *,
    namespace_path: str | os.PathLike[str] | None = NAMESPACE_PATH,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Disruption evidence of this pod: ``{"k8s_disruption": reason}`` and/or ``{"k8s_deleting": True}``.

    Every input is injectable: ``api_base`` (default from ``KUBERNETES_SERVICE_HOST``/``_PORT`` in
    ``env``), ``namespace`` (default: the service account's ``namespace`` file), ``pod_name`` (default:
    ``HOSTNAME`` in ``env``), ``token_path`` and ``ca_path`` (the service account's files; the token is
    re-read on every call because projected tokens rotate). Not in a cluster, no token, any HTTP error,
    non-200 or unparsable answer -> ``{}`` (logged at debug). Never raises.
    """
    try:
        base = api_base or _in_cluster_base(env)
        if not base:
            log.debug("kubernetes: not in a cluster (no KUBERNETES_SERVICE_HOST/PORT)")
            return {}
        name = pod_name or env.get("HOSTNAME")
        ns = namespace or _read_text(namespace_path)
        token = _read_text(token_path)
        if not name or not ns or not token:
            log.debug("kubernetes: missing pod name (%r), namespace (%r) or token", name, ns)
            return {}
        def get(path: str) -> Any:
            response = request(
                "GET",
                f"{base.rstrip('/')}{path}",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=timeout,
                verify=_verify(base, ca_path),
                source="kubernetes",
            )
            return ok_json(response, source="kubernetes")

        pod = get(f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(name, safe='')}")
        found = pod_evidence(pod)
        node_name = (pod.get("spec") or {}).get("nodeName") if isinstance(pod, Mapping) else None
        if found.get("k8s_disruption") and isinstance(node_name, str) and node_name:
            # A drain cordons the node before it evicts: read the node (needs ``get`` on nodes; 403 -> skipped).
            if node_cordoned(get(f"/api/v1/nodes/{quote(node_name, safe='')}")):
                found["k8s_node_cordoned"] = True
        return found
    except Exception as exc:  # noqa: BLE001 - a reader never raises
        log.debug("kubernetes: unexpected error: %s: %s", type(exc).__name__, exc)
        return {}


#: Exit codes of a container killed by a signal (128 + signal number).
_SIGNAL_EXIT = {137: 9, 143: 15}


def pod_facts(pod: Any, node: Any = None) -> dict[str, Any]:
    """What a task pod says about how its try ended (pure; JSON-ready; ``{}`` for anything but a pod).

    From the ``Pod``: ``pod``/``uid``/``node`` (``spec.nodeName``), ``disruption`` (the ``DisruptionTarget``
    reason), ``deleting`` (a deletion timestamp) and, once its first container terminated, ``terminated``
    (``reason``, ``exit_code``). From the ``Node`` when given: ``node_cordoned`` (``spec.unschedulable``:
    a ``kubectl drain`` cordons first).
    """
    if not isinstance(pod, Mapping):
        return {}
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
    facts: dict[str, Any] = {"pod": meta.get("name"), "uid": meta.get("uid"), "node": spec.get("nodeName")}
    found = pod_evidence(pod)
    if "k8s_disruption" in found:
        facts["disruption"] = found["k8s_disruption"]
    if found.get("k8s_deleting"):
        facts["deleting"] = True
    for cs in status.get("containerStatuses") or []:
        terminated = ((cs or {}).get("state") or {}).get("terminated") if isinstance(cs, Mapping) else None
        if isinstance(terminated, Mapping):
            facts["terminated"] = {"reason": terminated.get("reason"), "exit_code": terminated.get("exitCode")}
        break
    if node_cordoned(node):
        facts["node_cordoned"] = True
    return facts


def node_cordoned(node: Any) -> bool:
    """A ``Node`` with ``spec.unschedulable`` (cordoned, as ``kubectl drain`` does first)."""
    return isinstance(node, Mapping) and isinstance(node.get("spec"), Mapping) and bool(node["spec"].get("unschedulable"))


def notable(facts: Mapping[str, Any]) -> bool:
    """The pod says something about a failure (a disruption, a deletion, a termination other than success)."""
    terminated = facts.get("terminated") or {}
    return bool(facts.get("disruption") or facts.get("deleting") or facts.get("node_cordoned")
                or (terminated and terminated.get("exit_code") not in (0, None)))


def facts_evidence(facts: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~airflow_resilience.causes.Evidence` fields from :func:`pod_facts` (pure)."""
    found: dict[str, Any] = {}
    if facts.get("disruption"):
        found["k8s_disruption"] = facts["disruption"]
    if facts.get("deleting"):
        found["k8s_deleting"] = True
    if facts.get("node_cordoned"):
        found["k8s_node_cordoned"] = True
    terminated = facts.get("terminated") or {}
    if terminated.get("reason") == "OOMKilled":
        found["oom_kills"] = 1
    code = terminated.get("exit_code")
    if isinstance(code, int) and code in _SIGNAL_EXIT:
        found["exit_signal"] = _SIGNAL_EXIT[code]
    return found
