"""KubernetesExecutor: evidence from the executor's side, node loss noticed fast, the next pod off a lost node.

Hard losses on Kubernetes are seen only by the scheduler: the executor's pod watcher sends it
``(FAILED, None)`` for an evicted, OOM-killed or deleted pod and logs the rest. This module keeps what
the pod said, for the try it ran:

* :class:`KubernetesPodWatch` runs in the detector process (a child of the scheduler) every
  ``[resilience] lost_worker_check_interval`` seconds. It lists the executor's pods (label
  ``kubernetes_executor=True`` in ``[kubernetes_executor] namespace``), and for each pod whose task instance
  is running or queued with the pod's ``try_number`` it records the pod's facts
  (:func:`~airflow_resilience.signals.kubernetes.pod_facts`: ``DisruptionTarget`` reason, deletion,
  container termination reason and exit code, node cordoned) in the try's state store under
  :data:`K8S_KEY` when they say something, so they outlive the pod.
* **Node lost**: a running task whose node's ``Lease`` has not changed for
  ``[resilience] kubernetes_node_lost_after`` seconds *of this process's own clock* (no clock skew between
  kubelet and scheduler can fake it; a detector that just started observes that long first) **and** whose
  own heartbeat is as old is on a lost node: the watch records ``worker_lost`` evidence naming the node
  and backdates the heartbeat so the scheduler's heartbeat-timeout handling fails the try at its next
  check, where the listener grants it from the infrastructure budget. A node that is slow to renew while
  its task still heartbeats is left alone.
* :func:`live_pod_facts`: the listener reads the pod itself when the executor's report beat the watch.
* :func:`avoid_lost_node`: from the ``pod_mutation_hook`` policy, the pod of the try after a node loss gets
  a required node anti-affinity to that node (the control plane may not have marked it ``NotReady`` yet).

Reading pods, nodes and leases needs ``list`` on ``pods`` (the executor's own namespace), ``nodes`` and
``coordination.k8s.io/leases`` in ``kube-node-lease``: see docs/kubernetes.md for the Role.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

log = logging.getLogger(__name__)

#: Per try: what its pod said (``try_number`` + :func:`~airflow_resilience.signals.kubernetes.pod_facts`).
K8S_KEY = "resilience:k8s_pod"
POD_SELECTOR = "kubernetes_executor=True"
LEASE_NAMESPACE = "kube-node-lease"

_client_cache: Any = None


def executor_is_kubernetes() -> bool:
    from airflow.configuration import conf

    return "KubernetesExecutor" in (conf.get("core", "executor", fallback="") or "")


def namespace() -> str:
    from airflow.configuration import conf

    return conf.get("kubernetes_executor", "namespace", fallback="default") or "default"


def client() -> Any:
    """The executor's own ``CoreV1Api`` (``[kubernetes_executor] in_cluster`` / ``config_file``)."""
    global _client_cache
    if _client_cache is None:
        from airflow.providers.cncf.kubernetes.kube_client import get_kube_client

        _client_cache = get_kube_client()
    return _client_cache


def _plain(obj: Any) -> Any:
    return client().api_client.sanitize_for_serialization(obj)


def pod_key(pod: dict) -> tuple[str, str, str, int, int] | None:
    """``(dag_id, task_id, run_id, try_number, map_index)`` from a task pod's annotations, or ``None``."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        return (ann["dag_id"], ann["task_id"], ann["run_id"], int(ann["try_number"]), int(ann.get("map_index", -1)))
    except (KeyError, TypeError, ValueError):
        return None


def live_pod_facts(ti: Any, timeout: float = 3.0) -> dict | None:
    """The facts of ``ti``'s pod for its current try, read now; ``None`` when there is no such pod or no answer."""
    from airflow_resilience.signals.kubernetes import pod_facts

    try:
        core = client()
        pods = _plain(core.list_namespaced_pod(namespace(), label_selector=POD_SELECTOR, _request_timeout=timeout))["items"]
        want = (ti.dag_id, ti.task_id, ti.run_id, int(ti.try_number), int(ti.map_index))
        for pod in pods:
            if pod_key(pod) == want:
                node_name = (pod.get("spec") or {}).get("nodeName")
                node = _plain(core.read_node(node_name, _request_timeout=timeout)) if node_name else None
                return {"try_number": want[3], **pod_facts(pod, node)}
    except Exception as exc:  # noqa: BLE001 - no answer is no evidence
        log.info("airflow-resilience: could not read the pod of %s: %s", getattr(ti, "key", ti), exc)
    return None


class KubernetesPodWatch:
    """See the module docstring."""

    #: Tag ``kind`` of the detector's metrics.
    kind = "kubernetes"

    def __init__(self, node_lost_after: float, heartbeat_timeout: float, *, interval: float = 2.0,
                 clock: Any = time.monotonic) -> None:
        self.node_lost_after = node_lost_after
        self.heartbeat_timeout = heartbeat_timeout
        self.interval = interval
        self.clock = clock
        #: node -> (last renewTime seen, our clock when it last changed)
        self.leases: dict[str, tuple[str | None, float]] = {}
        self._written: dict[str, dict] = {}
        self._lost_reported: set[tuple] = set()
        #: The executor's pods listed by the last round (``None`` until a round lists them).
        self.seen: int | None = None

    def observe_leases(self, leases: dict[str, str | None]) -> None:
        now = self.clock()
        for node, renew in leases.items():
            seen = self.leases.get(node)
            if seen is None or seen[0] != renew:
                self.leases[node] = (renew, now)

    def lease_silent_for(self, node: str) -> float | None:
        """Seconds (our clock) since ``node``'s Lease last changed; ``None`` when never observed."""
        seen = self.leases.get(node)
        return None if seen is None else self.clock() - seen[1]

    def check(self) -> int:
        from sqlalchemy import select

        from airflow.models.taskinstance import TaskInstance
        from airflow.state import get_state_backend
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        from airflow_resilience.airflow.accounting import EVIDENCE_KEY
        from airflow_resilience.airflow.runtime import settings
        from airflow_resilience.airflow.ti_state import applies, task_scope, write_json
        from airflow_resilience.signals.kubernetes import notable, pod_facts

        self.seen = None
        cfg = settings()
        core = client()
        pods = _plain(core.list_namespaced_pod(namespace(), label_selector=POD_SELECTOR, _request_timeout=10))["items"]
        self.seen = len(pods)
        if not pods:
            return 0
        nodes = {n["metadata"]["name"]: n for n in _plain(core.list_node(_request_timeout=10))["items"]}
        if self.node_lost_after > 0:
            from kubernetes.client import CoordinationV1Api

            leases = CoordinationV1Api(core.api_client).list_namespaced_lease(LEASE_NAMESPACE, _request_timeout=10)
            self.observe_leases({l.metadata.name: str(l.spec.renew_time) for l in leases.items})
        backend = get_state_backend()
        lost = 0
        live = set()
        keyed = [(key, pod) for pod in pods if (key := pod_key(pod)) is not None]
        with create_session() as session:
            # One query per round for the task instances of every pod (running or queued), not one per pod.
            tis = {
                (t.dag_id, t.task_id, t.run_id, t.map_index): t
                for t in session.scalars(select(TaskInstance).where(
                    TaskInstance.dag_id.in_({k[0] for k, _ in keyed}),
                    TaskInstance.state.in_((TaskInstanceState.RUNNING, TaskInstanceState.QUEUED))))
            }
            for key, pod in keyed:
                dag_id, task_id, run_id, try_number, map_index = key
                ti = tis.get((dag_id, task_id, run_id, map_index))
                if ti is None or int(ti.try_number) != try_number:
                    continue
                if cfg.selective_enable and not applies(cfg, dag_id, session):
                    continue
                uid = pod["metadata"].get("uid")
                live.add(uid)
                node_name = (pod.get("spec") or {}).get("nodeName")
                facts = {"try_number": try_number, **pod_facts(pod, nodes.get(node_name))}
                if notable(facts) and self._written.get(uid) != facts:
                    write_json(backend, task_scope(ti), K8S_KEY, facts, session)
                    self._written[uid] = facts
                    log.info("airflow-resilience: pod %s of %s: %s", facts.get("pod"), ti.key, facts)
                if ti.state == TaskInstanceState.RUNNING and node_name and self._node_lost(ti, node_name, key):
                    silent = self.lease_silent_for(node_name) or 0.0
                    beat = ti.last_heartbeat_at
                    note = (f"node {node_name} stopped renewing its Lease {silent:.0f} s ago and the task's heartbeat "
                            f"is {_age(beat):.0f} s old: pod {facts.get('pod')} is on a lost node")
                    write_json(backend, task_scope(ti), EVIDENCE_KEY,
                         {"try_number": try_number, "worker_lost": True, "note": note, "node": node_name, "detected_at": time.time()}, session)
                    ti.last_heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=self.heartbeat_timeout + 60)
                    self._lost_reported.add(key)
                    log.warning("airflow-resilience: lost node for %s: %s", ti.key, note)
                    lost += 1
        for uid in list(self._written):
            if uid not in live:
                del self._written[uid]
        return lost

    def _node_lost(self, ti: Any, node: str, key: tuple) -> bool:
        if self.node_lost_after <= 0 or key in self._lost_reported:
            return False
        silent = self.lease_silent_for(node)
        if silent is None or silent < self.node_lost_after:
            return False  # renewing, or not observed long enough: no positive evidence
        beat = ti.last_heartbeat_at or ti.start_date
        return beat is not None and _age(beat) >= self.node_lost_after


def _age(when: Any) -> float:
    if when is None:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - when).total_seconds()


def avoid_lost_node(pod: Any) -> None:
    """``pod_mutation_hook``: the pod of a try after a node loss must not land on that node again.

    Reads the previous try's evidence only for pods with ``try_number`` > 1; any error leaves the pod as
    Airflow built it.
    """
    try:
        ann = pod.metadata.annotations or {}
        try_number = int(ann.get("try_number", "1"))
        if try_number <= 1:
            return
        from airflow.state import get_state_backend
        from airflow.utils.session import create_session

        from airflow_resilience.airflow.compat import TaskScope

        from airflow_resilience.airflow.accounting import EVIDENCE_KEY
        from airflow_resilience.airflow.ti_state import read_json

        scope = TaskScope(dag_id=ann["dag_id"], run_id=ann["run_id"], task_id=ann["task_id"], map_index=int(ann.get("map_index", -1)))
        with create_session() as session:
            found = read_json(get_state_backend(), scope, EVIDENCE_KEY, session) or {}
        node = found.get("node")
        if not (found.get("worker_lost") and node and found.get("try_number") == try_number - 1):
            return
        keep_off(pod, node)
        log.info("airflow-resilience: try %s of %s.%s avoids node %s (lost on the previous try)", try_number, ann.get("dag_id"), ann.get("task_id"), node)
    except Exception as exc:  # noqa: BLE001 - never break pod creation
        log.warning("airflow-resilience: pod_mutation_hook left the pod unchanged: %s", exc)


def keep_off(pod: Any, node: str) -> None:
    """Add a required node anti-affinity ``kubernetes.io/hostname NotIn [node]`` to ``pod`` (a ``V1Pod``),
    keeping the pod's own node affinity (its terms are ORed: the requirement goes into each)."""
    from kubernetes.client import models as k8s

    requirement = k8s.V1NodeSelectorRequirement(key="kubernetes.io/hostname", operator="NotIn", values=[node])
    spec = pod.spec
    affinity = spec.affinity or k8s.V1Affinity()
    node_affinity = affinity.node_affinity or k8s.V1NodeAffinity()
    required = node_affinity.required_during_scheduling_ignored_during_execution
    if required is None or not required.node_selector_terms:
        required = k8s.V1NodeSelector(node_selector_terms=[k8s.V1NodeSelectorTerm(match_expressions=[requirement])])
    else:
        for term in required.node_selector_terms:
            term.match_expressions = [*(term.match_expressions or []), requirement]
    node_affinity.required_during_scheduling_ignored_during_execution = required
    affinity.node_affinity = node_affinity
    spec.affinity = affinity
