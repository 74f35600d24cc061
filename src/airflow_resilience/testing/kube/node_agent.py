"""A node agent: the kubelet's part on a test cluster that has no container runtime.

It does what the rest of the control plane needs from a kubelet, and nothing else:

* registers its ``Node`` (``Ready``, capacity, ``kubernetes.io/hostname``) and renews its ``Lease`` in
  ``kube-node-lease`` every 10 s (the kubelet's default: ``leaseDurationSeconds`` 40, renewed at 1/4);
* runs each pod bound to it (``spec.nodeName``) as local processes: the first container's ``command`` +
  ``args`` (with no ``command``, the ``args`` are run, as the official Airflow image's entrypoint does),
  with the agent's environment (standing in for the image) plus the container's ``env``, ``HOSTNAME`` = the
  pod name (its own UTS namespace), ``KUBERNETES_SERVICE_HOST``/``PORT`` and a service-account token from
  the TokenRequest API bind-mounted at ``/var/run/secrets/kubernetes.io/serviceaccount`` (its own mount
  namespace), so the in-pod evidence reader works as in a real pod;
* enforces ``resources.limits.memory`` with a real memory cgroup per pod. As Kubernetes >= 1.32 does on
  cgroup v2 (``memory.oom.group=1``), an OOM kills the whole container at once, so no process of it lives
  to report anything; the pod ends ``OOMKilled`` / exit code 137. On cgroup v1 (no ``oom.group``) the
  kernel's OOM killer is disabled for the pod's cgroup (``oom_kill_disable``): at the limit its processes
  stop, and the agent kills all of them together (checked every 0.5 s);
* reports pod status: ``Running`` with a running container status, then ``Succeeded``/``Failed`` with the
  container's ``terminated`` state (exit code, reason ``Completed``/``Error``/``OOMKilled``, and the
  termination message: what the container wrote to its ``terminationMessagePath``, default
  ``/dev/termination-log``, a per-pod file bind-mounted there; at most 4096 bytes, as the kubelet reads);
* honours deletion: a pod with a ``deletionTimestamp`` gets SIGTERM, SIGKILL after
  ``deletionGracePeriodSeconds``, its terminal status, then the final delete (grace 0, UID precondition).

What it does not do: images (the command runs from this machine's filesystem), volumes other than the
service-account token, probes, restarts (``restartPolicy`` is treated as ``Never``), CPU limits, logs and
exec through the API, more than one container per pod. Killing the agent with its processes is a node lost.

Run: ``python -m airflow_resilience.testing.kube.node_agent --name NODE --server URL --token-file F --ca CA
--workdir DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("airflow_resilience.node_agent")

LEASE_SECONDS = 40
RENEW_EVERY = 10.0
POLL_EVERY = 0.5
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def now_iso(micro: bool = False) -> str:
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def memory_bytes(quantity: str | None) -> int | None:
    """A Kubernetes memory quantity (``"128Mi"``, ``"1G"``, ``"1048576"``) in bytes; ``None`` when absent."""
    if not quantity:
        return None
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * units[suffix])
    return int(float(quantity))


class Api:
    """A few calls to the API server (httpx, bearer token, the cluster's CA)."""

    def __init__(self, server: str, token: str, ca: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, verify=ssl.create_default_context(cafile=ca), timeout=10)

    def call(self, method: str, path: str, body: Any = None, *, ok=(200, 201), patch: str | None = None, **params: Any) -> Any:
        headers = {"Content-Type": patch} if patch else {}
        content = json.dumps(body) if body is not None else None
        r = self.client.request(method, path, content=content, headers=headers, params=params or None)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None


@dataclass
class Container:
    """One pod's running process and what the agent knows about it."""

    uid: str
    name: str
    namespace: str
    proc: subprocess.Popen
    started_at: str
    cgroup: Path | None
    oom: bool = False
    term_sent_at: float | None = None
    kill_at: float | None = None
    reported: bool = False
    exit: dict[str, Any] = field(default_factory=dict)


class Cgroup:
    """A memory cgroup per pod (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``)."""

    def __init__(self, node: str) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "memory" in v2.read_text():
            self.root, self.v2 = Path("/sys/fs/cgroup") / f"airflow-resilience-{node}", True
        else:
            self.root, self.v2 = Path("/sys/fs/cgroup/memory") / f"airflow-resilience-{node}", False

    def create(self, uid: str, limit: int) -> Path:
        path = self.root / uid
        path.mkdir(parents=True, exist_ok=True)
        (path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit))
        if self.v2:
            (path / "memory.oom.group").write_text("1")
        else:
            (path / "memory.oom_control").write_text("1")  # stop at the limit, the agent kills the group
            try:
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            except OSError:
                pass
        return path

    def under_oom(self, path: Path) -> bool:
        """cgroup v1: the pod's processes are stopped at their memory limit."""
        if self.v2:
            return False
        try:
            return "under_oom 1" in (path / "memory.oom_control").read_text()
        except OSError:
            return False

    def kill_all(self, path: Path) -> None:
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def oom_kills(self, path: Path) -> int:
        from airflow_resilience.signals.cgroup import _counter  # the same counter the in-task reader reads

        try:
            text = (path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        except OSError:
            return 0
        return _counter(text, "oom_kill") or 0

    def remove(self, path: Path) -> None:
        for _ in range(20):
            try:
                path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def ensure_mountpoint(path: Path, workdir: Path) -> None:
    """A file to bind the pod's own termination log over (created once on the host when missing, recorded in
    ``created-mountpoints`` so the cluster removes it at stop)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    with open(workdir.parent.parent / "created-mountpoints", "a") as fh:
        fh.write(f"{path}\n")


class NodeAgent:
    def __init__(self, name: str, server: str, token: str, ca: str, workdir: Path, base_env: dict[str, str]) -> None:
        self.name = name
        self.server = server
        self.ca = ca
        self.api = Api(server, token, ca)
        self.workdir = workdir
        self.base_env = base_env
        self.containers: dict[str, Container] = {}
        self.failed_to_start: set[str] = set()
        self.finalized: set[str] = set()
        self.cgroups = Cgroup(name)
        self.stopping = threading.Event()

    # ------------------------------------------------------------------ node and lease
    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        }
        self.api.call("POST", "/api/v1/nodes", node, ok=(201, 409))
        self.report_node_status()
        got = self.api.call("GET", f"/api/v1/nodes/{self.name}")
        self.node_uid = got["metadata"]["uid"]
        self.renew_lease()

    def report_node_status(self) -> None:
        stamp = now_iso()
        conditions = [
            {"type": t, "status": "False", "reason": f"Kubelet Has No {t}", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "node agent is posting ready status", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        resources = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        status = {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": self.name, "systemUUID": self.name, "bootID": str(os.getpid()), "kernelVersion": os.uname().release,
                    "osImage": "airflow-resilience node agent", "containerRuntimeVersion": "local://0", "kubeletVersion": "v0.0.0-agent",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                },
            }
        }
        self.api.call("PATCH", f"/api/v1/nodes/{self.name}/status", status, patch="application/strategic-merge-patch+json")

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.node_uid}]},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_iso(micro=True)},
        }
        try:
            current = self.api.call("GET", path, ok=(200,))
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.api.call("PUT", path, body)
        except RuntimeError as exc:
            if ": 404 " not in str(exc):
                raise
            self.api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body)

    def lease_loop(self) -> None:
        while not self.stopping.wait(RENEW_EVERY):
            try:
                self.renew_lease()
            except Exception as exc:  # noqa: BLE001 - keep renewing
                log.warning("lease renewal failed: %s", exc)

    # ------------------------------------------------------------------ pods
    def pods(self) -> list[dict]:
        got = self.api.call("GET", "/api/v1/pods", fieldSelector=f"spec.nodeName={self.name}")
        return got.get("items", [])

    def sync(self) -> None:
        seen = set()
        for pod in self.pods():
            meta, uid = pod["metadata"], pod["metadata"]["uid"]
            seen.add(uid)
            phase = (pod.get("status") or {}).get("phase")
            c = self.containers.get(uid)
            if meta.get("deletionTimestamp"):
                self.delete(pod, c)
                continue
            if c is None and phase in (None, "Pending") and uid not in self.failed_to_start:
                self.start(pod)
            elif c is not None and c.cgroup and c.proc.poll() is None and self.cgroups.under_oom(c.cgroup):
                log.warning("pod %s/%s: out of memory: killing the container", c.namespace, c.name)
                c.oom = True
                self.cgroups.kill_all(c.cgroup)
            elif c is not None and not c.reported and c.proc.poll() is not None:
                self.report_exit(pod, c)
        for uid in list(self.containers):
            if uid not in seen:  # deleted with grace 0 (force): kill what is left
                c = self.containers.pop(uid)
                if c.proc.poll() is None:
                    self.signal(c, signal.SIGKILL)
                    c.proc.wait()
                if c.cgroup:
                    self.cgroups.remove(c.cgroup)

    def start(self, pod: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, name, ns = meta["uid"], meta["name"], meta["namespace"]
        container = spec["containers"][0]
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        poddir = self.workdir / "pods" / uid
        sa_dir = poddir / "serviceaccount"
        sa_dir.mkdir(parents=True, exist_ok=True)
        try:
            if not argv:
                raise RuntimeError("the container has no command or args (the agent runs no images)")
            sa = spec.get("serviceAccountName") or "default"
            req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 3600, "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}}}
            token = self.api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", req)["status"]["token"]
            (sa_dir / "token").write_text(token)
            (sa_dir / "ca.crt").write_text(Path(self.ca).read_text())
            (sa_dir / "namespace").write_text(ns)
            env = dict(self.base_env)
            for item in container.get("env") or []:
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                elif (ref := (item.get("valueFrom") or {}).get("fieldRef")) is not None:
                    env[item["name"]] = {"metadata.name": name, "metadata.namespace": ns, "spec.nodeName": self.name,
                                         "status.podIP": "127.0.0.1", "metadata.uid": uid}.get(ref.get("fieldPath"), "")
            port = self.server.rsplit(":", 1)[1].rstrip("/")
            env.update({"HOSTNAME": name, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port})
            limit = memory_bytes(((container.get("resources") or {}).get("limits") or {}).get("memory"))
            cgroup = self.cgroups.create(uid, limit) if limit else None
            term_path = container.get("terminationMessagePath") or "/dev/termination-log"
            term_file = poddir / "termination-log"
            term_file.write_text("")
            ensure_mountpoint(Path(term_path), self.workdir)
            inner = (f"hostname {shlex.quote(name)} && mount --bind {shlex.quote(str(sa_dir))} {SA_MOUNT}"
                     f" && mount --bind {shlex.quote(str(term_file))} {shlex.quote(term_path)} && exec \"$@\"")
            prefix = f"echo $$ > {shlex.quote(str(cgroup / 'cgroup.procs'))} && " if cgroup else ""
            outer = prefix + f"exec unshare --uts --mount sh -c {shlex.quote(inner)} sh \"$@\""
            os.makedirs(SA_MOUNT, exist_ok=True)
            logfile = open(poddir / "container.log", "ab")  # noqa: SIM115 - handed to the process
            proc = subprocess.Popen(["sh", "-c", outer, "sh", *argv], env=env, cwd=str(poddir), stdin=subprocess.DEVNULL,
                                    stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
            logfile.close()
        except Exception as exc:  # noqa: BLE001 - a pod that cannot start is Failed, the agent goes on
            log.exception("pod %s/%s cannot start", ns, name)
            self.failed_to_start.add(uid)
            self.patch_status(ns, name, {"phase": "Failed", "reason": "StartError", "message": str(exc)[:300]})
            return
        started = now_iso()
        self.containers[uid] = Container(uid, name, ns, proc, started, cgroup)
        log.info("pod %s/%s started: pid %s", ns, name, proc.pid)
        self.patch_status(ns, name, {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": started,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": started} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": container["name"], "ready": True, "started": True, "restartCount": 0, "image": container.get("image", ""),
                                   "imageID": "", "containerID": f"local://{proc.pid}", "state": {"running": {"startedAt": started}}}],
        })

    def signal(self, c: Container, sig: int) -> None:
        try:
            os.kill(c.proc.pid, sig)  # the container's main process (PID 1 in a real container)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)  # with everything it started
            except ProcessLookupError:
                pass

    def delete(self, pod: dict, c: Container | None) -> None:
        meta = pod["metadata"]
        if c is not None and c.proc.poll() is None:
            if c.term_sent_at is None:
                grace = meta.get("deletionGracePeriodSeconds")
                grace = 30 if grace is None else int(grace)
                c.term_sent_at = time.monotonic()
                c.kill_at = c.term_sent_at + grace
                log.info("pod %s/%s deleted: SIGTERM, SIGKILL after %ss", c.namespace, c.name, grace)
                self.signal(c, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            elif c.kill_at is not None and time.monotonic() >= c.kill_at:
                self.signal(c, signal.SIGKILL)
                c.kill_at = None
            return
        if c is not None:
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)  # leftovers of the container
            except (ProcessLookupError, PermissionError):
                pass
            if not c.reported:
                self.report_exit(pod, c)
        # the kubelet's final delete: grace 0, only this pod (UID precondition); once (a finalizer may hold it)
        if meta["uid"] in self.finalized:
            return
        self.finalized.add(meta["uid"])
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        self.api.call("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body, ok=(200, 404, 409))
        if c is not None:
            self.containers.pop(c.uid, None)
            if c.cgroup:
                self.cgroups.remove(c.cgroup)

    def report_exit(self, pod: dict, c: Container) -> None:
        code = c.proc.returncode
        oom = c.oom or (bool(c.cgroup) and self.cgroups.oom_kills(c.cgroup) > 0)
        if code is not None and code < 0:
            exit_code, sig = 128 - code, -code
        else:
            exit_code, sig = code, None
        reason = "OOMKilled" if oom and exit_code != 0 else ("Completed" if exit_code == 0 else "Error")
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": c.started_at, "finishedAt": now_iso(), "containerID": f"local://{c.proc.pid}"}
        try:  # the kubelet reads at most 4096 bytes of the termination message
            message = (self.workdir / "pods" / c.uid / "termination-log").read_bytes()[:4096].decode(errors="replace")
        except OSError:
            message = ""
        if message:
            terminated["message"] = message
        if sig:
            terminated["signal"] = sig
        container = pod["spec"]["containers"][0]
        log.info("pod %s/%s exited: %s", c.namespace, c.name, terminated)
        self.patch_status(c.namespace, c.name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [{"type": t, "status": "False", "lastTransitionTime": now_iso(), "reason": "PodCompleted"} for t in ("Ready", "ContainersReady")],
            "containerStatuses": [{"name": container["name"], "ready": False, "started": False, "restartCount": 0, "image": container.get("image", ""),
                                   "imageID": "", "containerID": f"local://{c.proc.pid}", "state": {"terminated": terminated}}],
        })
        c.reported = True

    def patch_status(self, ns: str, name: str, status: dict) -> None:
        self.api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status},
                      patch="application/strategic-merge-patch+json", ok=(200, 404))

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.lease_loop, daemon=True, name="lease").start()
        log.info("node %s ready", self.name)
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - an API hiccup must not stop the node
                log.warning("sync failed: %s", exc)
            time.sleep(POLL_EVERY)

    def shutdown(self) -> None:
        self.stopping.set()
        for c in self.containers.values():
            if c.proc.poll() is None:
                self.signal(c, signal.SIGKILL)
            if c.cgroup:
                self.cgroups.remove(c.cgroup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-resilience-node-agent")
    parser.add_argument("--name", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s] {args.name} %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = NodeAgent(args.name, args.server, Path(args.token_file).read_text().strip(), args.ca, Path(args.workdir), dict(os.environ))

    def stop(*_: object) -> None:
        agent.shutdown()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
