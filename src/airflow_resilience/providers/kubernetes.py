"""A workload pod run resumably: created once per task instance, reattached to (by UID) after any kill of
the worker, its result taken from its termination message.

.. code-block:: python

    from airflow_resilience.providers.kubernetes import ResumablePodOperator

    ResumablePodOperator(
        task_id="train",
        image="registry/train:1.4",
        cmds=["python", "-m", "train"],
        arguments=["--epochs", "20"],
        env_vars={"MODE": "full"},
        namespace="jobs",
    )

What it guarantees, and where the provider's ``KubernetesPodOperator`` does not:

* **One workload pod.** The pod's name comes from the task's idempotency token (``submit_once``): the intent
  to create it is saved before the request, so a worker killed between the request and the saved id finds
  the pod by that name on the next try (KPO's ``reattach_on_restart`` looks pods up by labels).
* **Reattached by UID.** The saved id is ``{namespace, name, uid}``; a pod with that name but another UID is
  never taken for it (provider issue #71743).
* **A drain never deletes the pod.** A SIGTERM drain of the worker (eviction, node drain) hands the try back
  without ``on_kill``; the next try enters at ``wait_for_job`` and reattaches (provider issue #21900: KPO's
  ``on_kill`` deletes the pod it meant to reattach to). A user's stop still deletes it.
* **The workload pod's own disruption** (``DisruptionTarget``: eviction, preemption, taint manager, node
  drain) is classified and paid from the infrastructure budget; the next try creates a fresh pod, never a
  reattach to the evicted one. A pod that fails on its own is an application failure (``retries``).
* **The result** is the container's termination message (``/dev/termination-log``, at most 4096 bytes:
  JSON is decoded, anything else is returned as text): the XCom. No sidecar and no ``exec``.

A finished pod is deleted on success (``delete_on_success``); a failed pod is kept for inspection.
The worker's service account needs ``create``, ``get`` and ``delete`` on ``pods`` in ``namespace``.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from airflow_resilience.airflow.operators import ExternalJobOperator
from airflow_resilience.resumable import JobStatus
from airflow_resilience.signals.kubernetes import pod_evidence

log = logging.getLogger(__name__)

TOKEN_LABEL = "airflow-resilience/token"
#: Holds the workload pod in the API until the operator has read how it ended (as the Job controller's
#: ``batch.kubernetes.io/job-tracking`` does): an evicted pod's DisruptionTarget is never missed.
FINALIZER = "airflow-resilience/result"


def pod_name(prefix: str, token: str) -> str:
    """A DNS-1123 pod name from ``prefix`` and the token's hash part (at most 63 characters)."""
    clean = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")[:38] or "job"
    return f"{clean}-{token.rsplit('-', 1)[-1][:24]}"


class PodJob:
    """:class:`~airflow_resilience.resumable.ExternalJob` over the Kubernetes API: one pod is one job."""

    dedupes_by_token = True  # a pod name is unique in its namespace: a second create answers 409

    def __init__(self, core: Any, namespace: str, template: dict, name_prefix: str) -> None:
        self.core = core
        self.namespace = namespace
        self.template = template
        self.name_prefix = name_prefix

    def _read(self, name: str) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.core.api_client.sanitize_for_serialization(self.core.read_namespaced_pod(name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _id(self, pod: dict) -> dict:
        meta = pod["metadata"]
        return {"namespace": self.namespace, "name": meta["name"], "uid": meta["uid"]}

    def submit(self, token: str) -> dict:
        from kubernetes.client.rest import ApiException

        body = copy.deepcopy(self.template)
        meta = body.setdefault("metadata", {})
        meta["name"] = pod_name(self.name_prefix, token)
        meta.setdefault("labels", {})[TOKEN_LABEL] = token
        meta["finalizers"] = [*meta.get("finalizers", []), FINALIZER]
        try:
            created = self.core.api_client.sanitize_for_serialization(self.core.create_namespaced_pod(self.namespace, body))
            log.info("airflow-resilience: created workload pod %s/%s", self.namespace, meta["name"])
            return self._id(created)
        except ApiException as exc:
            if exc.status != 409:
                raise
        found = self.find(token)
        if found is None:
            raise RuntimeError(f"pod {self.namespace}/{meta['name']} exists but was not created with token {token}")
        return found

    def find(self, token: str) -> dict | None:
        pod = self._read(pod_name(self.name_prefix, token))
        if pod is None or (pod["metadata"].get("labels") or {}).get(TOKEN_LABEL) != token:
            return None
        return self._id(pod)

    def status(self, job_id: dict) -> JobStatus:
        pod = self._read(job_id["name"])
        if pod is None:
            return JobStatus("failed", message=f"pod {job_id['namespace']}/{job_id['name']} is gone")
        if pod["metadata"].get("uid") != job_id.get("uid"):
            return JobStatus("failed", message=f"pod {job_id['name']} now has uid {pod['metadata'].get('uid')}, not {job_id.get('uid')}: not ours")
        status = pod.get("status") or {}
        disruption = pod_evidence(pod).get("k8s_disruption")
        if disruption:
            return JobStatus("failed", message=f"disrupted: DisruptionTarget reason={disruption}", result={"disruption": disruption})
        phase = status.get("phase")
        terminated = next(((cs.get("state") or {}).get("terminated") for cs in status.get("containerStatuses") or []), None) or {}
        if phase == "Succeeded":
            message = terminated.get("message") or ""
            try:
                result = json.loads(message) if message else None
            except ValueError:
                result = message
            return JobStatus("succeeded", result=result)
        if phase == "Failed":
            return JobStatus("failed", message=f"pod {job_id['name']} failed: {terminated.get('reason')} exit code {terminated.get('exitCode')}")
        return JobStatus("running")

    def release(self, job_id: dict) -> None:
        """Remove our finalizer (the pod may then go); a pod that is gone or not ours is left alone."""
        pod = self._read(job_id["name"])
        if pod is None or pod["metadata"].get("uid") != job_id.get("uid"):
            return
        finalizers = pod["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        i = finalizers.index(FINALIZER)
        self.core.patch_namespaced_pod(job_id["name"], self.namespace, [
            {"op": "test", "path": "/metadata/uid", "value": job_id["uid"]},
            {"op": "test", "path": f"/metadata/finalizers/{i}", "value": FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{i}"},
        ])

    def delete(self, job_id: dict) -> None:
        from kubernetes.client import V1DeleteOptions, V1Preconditions
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_pod(job_id["name"], self.namespace, body=V1DeleteOptions(preconditions=V1Preconditions(uid=job_id["uid"])))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        self.release(job_id)

    def cancel(self, job_id: dict) -> None:
        self.delete(job_id)


class ResumablePodOperator(ExternalJobOperator):
    """Run one workload pod resumably (see the module docstring)."""

    template_fields = ("image", "cmds", "arguments", "env_vars")

    def __init__(
        self,
        *,
        image: str,
        cmds: list[str] | None = None,
        arguments: list[str] | None = None,
        env_vars: dict[str, str] | None = None,
        namespace: str = "default",
        name: str | None = None,
        pod_override: dict | None = None,
        kubernetes_conn_id: str | None = None,
        in_cluster: bool | None = None,
        config_file: str | None = None,
        delete_on_success: bool = True,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.image, self.cmds, self.arguments = image, cmds, arguments
        self.env_vars = dict(env_vars or {})
        self.namespace = namespace
        self.pod_name_prefix = name or self.task_id
        self.pod_override = pod_override or {}
        self.kubernetes_conn_id, self.in_cluster, self.config_file = kubernetes_conn_id, in_cluster, config_file
        self.delete_on_success = delete_on_success

    def core(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.kubernetes_conn_id, in_cluster=self.in_cluster, config_file=self.config_file).core_v1_client

    def pod_template(self, context: Any) -> dict:
        ti = context["ti"] if context else None
        labels = {"airflow-resilience/workload": "true"}
        if ti is not None:
            labels.update({"dag_id": _label(ti.dag_id), "task_id": _label(ti.task_id)})
        container: dict[str, Any] = {"name": "base", "image": self.image,
                                     "env": [{"name": k, "value": str(v)} for k, v in self.env_vars.items()]}
        if self.cmds:
            container["command"] = list(self.cmds)
        if self.arguments:
            container["args"] = list(self.arguments)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": labels},
               "spec": {"restartPolicy": "Never", "containers": [container]}}
        return _merge(pod, self.pod_override)

    def job(self, context: Any) -> PodJob:
        return PodJob(self.core(), self.namespace, self.pod_template(context), self.pod_name_prefix)

    def wait_for_job(self, context: Any, job_id: Any) -> Any:
        import time

        from airflow.sdk.exceptions import AirflowException

        self.job_id = job_id
        job = self.job(context)
        # A disruption seen on the first poll of a try that *resumed* (job id saved by an earlier try) ended
        # that earlier try: make a fresh pod now. A disruption of the pod this try submitted (even one seen on
        # the first poll, when the pod was evicted within seconds) hands this try back.
        first = not self.submitted_this_try
        while True:
            status = job.status(job_id)
            if status.state == "succeeded":
                try:
                    job.delete(job_id) if self.delete_on_success else job.release(job_id)
                except Exception:  # noqa: BLE001 - the result is in; a leftover pod is not a failure
                    self.log.warning("could not delete workload pod %s", job_id["name"])
                return status.result
            if status.state == "failed":
                disruption = (status.result or {}).get("disruption") if isinstance(status.result, dict) else None
                if disruption and first:
                    # Disrupted before this try started (the try that saw it handed back): a fresh pod now.
                    self.log.warning("airflow-resilience: workload pod %s was %s: creating a new one", job_id["name"], status.message)
                    job.delete(job_id)
                    return self.execute(context)
                if not disruption:
                    job.release(job_id)  # a failed pod stays for inspection, without our hold
                if disruption:  # the pod stays held: the next try reads its end, then makes a fresh one
                    from airflow_resilience.airflow.execution import hand_back
                    from airflow_resilience.causes import Evidence, classify

                    cause = classify(Evidence(k8s_disruption=disruption, notes=(("workload pod", job_id["name"]),)))
                    self.log.warning("airflow-resilience: workload pod %s: %s; the next try creates a new pod", job_id["name"], status.message)
                    hand_back(context, cause)
                raise AirflowException(f"workload pod failed: {status.message}")
            first = False
            time.sleep(self.poll_interval)


def _label(value: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)[:63]
    return clean.strip("-_.") or "x"


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
