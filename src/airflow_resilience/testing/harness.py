"""A real Airflow for tests: api-server, scheduler, dag-processor and triggerer in a temporary home.

.. code-block:: python

    with AirflowEnvironment.create(dags=[Path("dags")]) as af:
        run_id = af.trigger("my_dag")
        ti = af.wait_for_task(run_id, "my_dag", "load", states={"running"})
        af.signal_runner("my_dag", run_id, "load", signal.SIGKILL)
        af.wait_for_run("my_dag", run_id)

The environment uses PostgreSQL when a server answers at ``AIRFLOW_RESILIENCE_TEST_PG`` (``host:port``,
default ``127.0.0.1:5432``; a fresh database named ``airflow_resilience_<random>``, dropped at stop) and
SQLite otherwise; Celery's Redis is ``AIRFLOW_RESILIENCE_TEST_REDIS`` (default ``127.0.0.1:6379``). The
suite's own run starts both itself (:mod:`airflow_resilience.testing.services`); :attr:`database_kind` and the log
line at start say which. ``AIRFLOW_RESILIENCE_TEST_DB=sqlite|postgres`` forces one.

The test process never imports Airflow's settings: it speaks to the REST API for triggering and clearing,
and reads the metadata database with its own SQLAlchemy engine. So a test session can drive several
environments, and the user's own ``AIRFLOW_HOME`` is never touched.

Every process started is stopped by its PID (with the processes it started, found by walking the
process tree): nothing is killed by name.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_resilience.testing.services import (
    free_port,
    postgres_address,
    postgres_answers,
    redis_address,
    redis_answers,
)

log = logging.getLogger("airflow_resilience.testing")

FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
WORKER_PREFIX = "worker-"


class EnvironmentUnavailable(RuntimeError):
    """A service the requested environment needs (PostgreSQL, Redis) is not reachable."""


def redis_reachable(host: str | None = None, port: int | None = None, timeout: float = 0.5) -> bool:
    """True when Redis answers PING at ``host:port`` (default: the session's, see :mod:`.services`)."""
    default_host, default_port = redis_address()
    return redis_answers(host or default_host, port or default_port, timeout)


def _free_port() -> int:
    return free_port()


def postgres_reachable(host: str | None = None, port: int | None = None, timeout: float = 0.5) -> bool:
    """True when PostgreSQL accepts a login as ``postgres`` at ``host:port`` (default: the session's)."""
    default_host, default_port = postgres_address()
    return postgres_answers(host or default_host, port or default_port, timeout)


@dataclass(frozen=True)
class TaskInstanceRow:
    """One task instance (or one archived try of it) as stored in the metadata database."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str | None
    max_tries: int
    pid: int | None
    hostname: str | None
    id: str
    start_date: datetime | None = None
    end_date: datetime | None = None
    retry_reason: str | None = None
    #: The executor's id of the workload (CeleryExecutor: the Celery task id).
    external_executor_id: str | None = None


@dataclass(frozen=True)
class TaskProcesses:
    """The processes of a running task instance: the supervisor and the task runner it forked."""

    runner: int
    supervisor: int
    #: process create times (psutil), so that a later signal never hits a recycled PID
    runner_created: float | None = None
    supervisor_created: float | None = None


@dataclass
class AirflowEnvironment:
    """A running Airflow 3 (LocalExecutor) for tests. Build with :meth:`create`, stop with :meth:`stop`."""

    home: Path
    database_url: str
    database_kind: str
    api_port: int
    env: dict[str, str]
    _owned_home: bool = False
    _postgres_db: str | None = None
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None
    _engine: Any = None
    executor: str = "local"
    #: Celery: names of the worker components ("worker-a", ...), their queue and concurrency.
    workers: tuple[str, ...] = ()
    celery_queue: str = ""
    worker_concurrency: int = 1
    _log_offsets: dict[str, int] = field(default_factory=dict)
    #: Per component: extra environment for every start (version skew: one component with the package off).
    component_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Per component: the ``airflow`` executable to start it with (version skew: a virtualenv without the
    #: package). LocalExecutor workers are forked by the scheduler and share its.
    component_bin: dict[str, str] = field(default_factory=dict)
    #: KubernetesExecutor: the cluster (a :class:`~airflow_resilience.testing.kube.KubeCluster`).
    kube: Any = None
    _owned_kube: Any = None
    #: (user, password) the REST calls log in with (``users=``); ``None``: all-admins mode, no password.
    login: tuple[str, str] | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        *,
        dags: Iterable[Path] = (),
        home: Path | None = None,
        database: str | None = None,
        parallelism: int = 4,
        config: Mapping[str, str] | None = None,
        start: bool = True,
        executor: str = "local",
        celery_workers: int = 2,
        worker_concurrency: int = 1,
        visibility_timeout: int = 21600,
        component_env: Mapping[str, Mapping[str, str]] | None = None,
        component_bin: Mapping[str, str] | None = None,
        kube: Any = None,
        nodes: int = 2,
        users: Mapping[str, tuple[str, str]] | None = None,
    ) -> AirflowEnvironment:
        """Prepare a home, a database and the configuration, deploy ``dags`` and (by default) start.

        :param database: ``"postgres"``, ``"sqlite"`` or ``None`` for PostgreSQL when reachable.
        :param config: extra settings as ``AIRFLOW__SECTION__KEY`` environment names -> values.
        :param executor: ``"local"`` (LocalExecutor) or ``"celery"``: CeleryExecutor with the Redis broker
            of the session (``AIRFLOW_RESILIENCE_TEST_REDIS``) and ``celery_workers`` ``airflow celery worker`` processes, each its own
            "node" (own process group, own ``--celery-hostname``, ``worker_concurrency`` slots). Celery
            needs PostgreSQL; :class:`EnvironmentUnavailable` says what is missing.
        :param visibility_timeout: Celery (Redis): seconds before an unacknowledged message is delivered again.
        :param component_env: per component name (``"scheduler"``, ``"dag-processor"``, ...), extra environment
            for it alone, e.g. ``{"scheduler": {"AIRFLOW__RESILIENCE__ENABLED": "False"}}``.
        :param component_bin: per component name, the ``airflow`` executable to run it with (another
            virtualenv, e.g. one without this package).
        :param kube: ``executor="kubernetes"``: a running :class:`~airflow_resilience.testing.kube.KubeCluster`
            to use (shared by several environments); without it one with ``nodes`` node agents is started and
            stopped with the environment. Task pods carry this environment's configuration in their pod template.
        """
        if executor not in ("local", "celery", "kubernetes"):
            raise ValueError(f"executor must be 'local', 'celery' or 'kubernetes', got {executor!r}")
        if executor == "kubernetes":
            if database == "sqlite" or not postgres_reachable():
                raise EnvironmentUnavailable("KubernetesExecutor needs PostgreSQL on %s:%d (not SQLite)" % postgres_address())
            database = "postgres"
        if executor == "celery":
            if database == "sqlite" or not postgres_reachable():
                raise EnvironmentUnavailable("CeleryExecutor needs PostgreSQL on %s:%d (not SQLite)" % postgres_address())
            if not redis_reachable():
                raise EnvironmentUnavailable("CeleryExecutor tests need Redis on %s:%d" % redis_address())
            database = "postgres"
        owned = home is None
        home = Path(tempfile.mkdtemp(prefix="airflow-resilience-")) if home is None else Path(home)
        home.mkdir(parents=True, exist_ok=True)
        (home / "dags").mkdir(exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        choice = database or os.environ.get("AIRFLOW_RESILIENCE_TEST_DB") or "auto"
        pg_db = None
        if choice == "auto":
            choice = "postgres" if postgres_reachable() else "sqlite"
            if choice == "sqlite":
                log.warning("PostgreSQL is not reachable on %s:%d: using SQLite", *postgres_address())
        if choice == "postgres":
            pg_db = f"airflow_resilience_{secrets.token_hex(4)}"
            _pg_admin(f'CREATE DATABASE "{pg_db}"')
            pg_host, pg_port = postgres_address()
            url = f"postgresql+psycopg2://postgres@{pg_host}:{pg_port}/{pg_db}"
        elif choice == "sqlite":
            url = f"sqlite:///{home / 'airflow.db'}"
        else:
            raise ValueError(f"database must be 'postgres' or 'sqlite', got {choice!r}")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "600",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__DEFAULT_CAPACITY": "50",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
                "AIRFLOW__CORE__DAG_DISCOVERY_SAFE_MODE": "False",
            }
        )
        workers: tuple[str, ...] = ()
        queue = ""
        if executor == "celery":
            tag = secrets.token_hex(3)
            queue = f"resilience-{tag}"
            workers = tuple(f"{WORKER_PREFIX}{chr(ord('a') + i)}" for i in range(celery_workers))
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": "redis://%s:%d/" % redis_address() + str(1 + secrets.randbelow(15)),
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://postgres@%s:%d/" % postgres_address() + str(pg_db),
                    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_resilience.airflow.celery.CELERY_CONFIG",
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                    "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                    "AIRFLOW__CELERY__OPERATION_TIMEOUT": "5",
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(visibility_timeout),
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                }
            )
        owned_kube = None
        if executor == "kubernetes":
            if kube is None:
                from airflow_resilience.testing.kube import KubeCluster

                kube = owned_kube = KubeCluster.start(nodes=nodes)
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
                    "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": kube_namespace(),
                    "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER": "False",
                    "AIRFLOW__KUBERNETES_EXECUTOR__CONFIG_FILE": str(kube.kubeconfig),
                    "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": str(home / "pod_template.json"),
                    "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY": "airflow-resilience/node-agent-local",
                    "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG": "none",
                    "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "True",
                    "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS_ON_FAILURE": "False",
                    "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE": "4",
                }
            )
        login = None
        if users:
            # Real logins (SimpleAuthManager, not all-admins): ``users`` maps a name to (role, password); an
            # empty role is a user that the auth manager lets see nothing. The harness's own REST calls log
            # in as the first admin.
            passwords = home / "simple_auth_manager_passwords.json"
            passwords.write_text(json.dumps({name: pw for name, (_role, pw) in users.items()}))
            env.update(
                {
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _pw) in users.items()),
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                }
            )
            admins = [(n, pw) for n, (r, pw) in users.items() if r.lower() == "admin"]
            if not admins:
                raise ValueError("users: name one admin (the harness's REST calls log in as it)")
            login = admins[0]
        env.update(config or {})
        if executor == "kubernetes":
            write_pod_template(home / "pod_template.json", env)
        self = cls(
            home=home,
            database_url=url,
            database_kind=choice,
            api_port=port,
            env=env,
            _owned_home=owned,
            _postgres_db=pg_db,
            executor=executor,
            workers=workers,
            celery_queue=queue,
            worker_concurrency=worker_concurrency,
            component_env={k: dict(v) for k, v in (component_env or {}).items()},
            component_bin=dict(component_bin or {}),
            kube=kube,
            _owned_kube=owned_kube,
            login=login,
        )
        for path in dags:
            self.deploy(path, wait=False)
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise
        return self

    def __enter__(self) -> AirflowEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this environment."""
        return subprocess.run(
            [_airflow_bin(), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self) -> None:
        t0 = time.monotonic()
        self.airflow("db", "migrate")
        log.info("database (%s) migrated in %.1fs", self.database_kind, time.monotonic() - t0)
        for name in (*COMPONENTS, *self.workers):
            self.start_component(name)
        self._wait_healthy(timeout=180)
        for name in self.workers:
            self.wait_worker_ready(name)
        log.info("Airflow up on %s (%s) in %.1fs", self.api_url, self.database_kind, time.monotonic() - t0)

    def start_component(self, name: str, env: Mapping[str, str] | None = None) -> int:
        """Start (or restart after a kill) one component; returns its PID.

        ``env``: extra environment for this start only, e.g. a Celery worker node with
        ``{"AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "False"}``. A name that starts with ``worker-`` and
        is not one of :attr:`workers` starts an extra worker node (stop it with :meth:`stop_component`)."""
        if name == "api-server":
            args = [name, "--port", str(self.api_port)]
        elif name.startswith(WORKER_PREFIX):
            args = [
                "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(self.worker_concurrency),
                "--queues", self.celery_queue, "--skip-serve-logs",
            ]
        else:
            args = [name]
        path = self.home / f"{name}.log"
        self._log_offsets[name] = path.stat().st_size if path.exists() else 0
        logfile = open(path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [self.component_bin.get(name, _airflow_bin()), *args],
            env={**self.env, **self.component_env.get(name, {}), **(env or {})},
            cwd=self.home,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logfile.close()
        self._procs[name] = proc
        return proc.pid

    # ------------------------------------------------------------------ Celery workers ("nodes")
    def wait_worker_ready(self, name: str, timeout: float = 120) -> None:
        """Wait until a Celery worker said it is ready (and consumes the environment's queue)."""
        deadline = time.monotonic() + timeout
        marker = f"{name}@"
        path = self.home / f"{name}.log"
        while time.monotonic() < deadline:
            with open(path, "rb") as fh:  # only what this start of the worker wrote
                fh.seek(self._log_offsets.get(name, 0))
                text = fh.read().decode(errors="replace")
            if f"{marker}" in text and " ready." in text.split(marker, 1)[-1]:
                return
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.component_log(name)}")
            time.sleep(0.3)
        raise TimeoutError(f"celery {name} not ready in {timeout}s:\n{self.component_log(name)}")

    def node_processes(self, name: str) -> list:
        """Every process of a worker "node": its main process and all descendants (psutil processes)."""
        import psutil

        proc = self._procs.get(name)
        if proc is None:
            return []
        try:
            main = psutil.Process(proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def worker_of(self, pid: int) -> str | None:
        """The worker whose process tree contains ``pid``."""
        for name in self.workers:
            if pid in {p.pid for p in self.node_processes(name)}:
                return name
        return None

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL a whole worker node (main process, pool processes, supervisors, task runners)."""
        pids = [p.pid for p in self.node_processes(name)]
        self.stop_component(name, sig=signal.SIGKILL, timeout=10)
        return pids

    def terminate_worker(self, name: str) -> int:
        """SIGTERM the worker's main process only (what Kubernetes does to a pod's PID 1): a warm shutdown."""
        pid = self._procs[name].pid
        os.kill(pid, signal.SIGTERM)
        return pid

    def component_pid(self, name: str) -> int:
        return self._procs[name].pid

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            _stop_tree(proc.pid, sig, timeout)
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop every process this environment started (by PID, with its descendants), drop the DB."""
        for name in reversed(list(self._procs)):
            try:
                self.stop_component(name)
            except Exception:
                log.exception("could not stop %s", name)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._postgres_db:
            try:
                _pg_admin(f'DROP DATABASE IF EXISTS "{self._postgres_db}" WITH (FORCE)')
            except Exception:
                log.exception("could not drop database %s", self._postgres_db)
            self._postgres_db = None
        if self.kube is not None:
            self._delete_task_pods()
        if self._owned_kube is not None:
            self._owned_kube.stop()
            self._owned_kube = None
        if self._owned_home and os.environ.get("AIRFLOW_RESILIENCE_KEEP_HOME") != "1":
            shutil.rmtree(self.home, ignore_errors=True)

    def _delete_task_pods(self) -> None:
        """Pods of this environment's tasks left in a shared cluster (grace 0)."""
        try:
            for pod in self.task_pods():
                self.kube.delete_pod(pod["metadata"]["name"], grace=0)
            for pod in self.kube.pods(selector="airflow-resilience/workload=true"):  # ResumablePodOperator's
                name = pod["metadata"]["name"]
                self.kube.request("PATCH", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{name}",
                                  {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
                self.kube.delete_pod(name, pod["metadata"]["namespace"], grace=0)
        except Exception:
            log.exception("could not delete the task pods")

    # ------------------------------------------------------------------ Kubernetes
    def task_pods(self, dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None) -> list[dict]:
        """This environment's task pods (any phase), oldest first; filtered by annotations."""
        out = []
        for pod in self.kube.pods(selector="kubernetes_executor=True"):
            ann = pod["metadata"].get("annotations") or {}
            if ann.get("airflow-resilience/home") != str(self.home):
                continue
            if (dag_id and ann.get("dag_id") != dag_id) or (run_id and ann.get("run_id") != run_id) or (task_id and ann.get("task_id") != task_id):
                continue
            out.append(pod)
        return sorted(out, key=lambda p: p["metadata"]["creationTimestamp"])

    def wait_for_pod(self, dag_id: str, run_id: str, task_id: str, try_number: int, *, phase: str = "Running", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pod in self.task_pods(dag_id, run_id, task_id):
                ann = pod["metadata"].get("annotations") or {}
                if ann.get("try_number") == str(try_number) and (pod.get("status") or {}).get("phase") == phase:
                    return pod
            time.sleep(0.25)
        raise TimeoutError(f"no {phase} pod for {dag_id}.{task_id} try {try_number} in {timeout}s:\n{self.component_log('scheduler')}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.component_log(name)}")
            try:
                last = self._http("GET", "/api/v2/monitor/health", auth=False)
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((last.get(p) or {}).get("status") == "healthy" for p in parts):
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"Airflow did not become healthy in {timeout}s: {last}")

    def component_log(self, name: str, tail: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    # ------------------------------------------------------------------ HTTP
    def token(self, username: str, password: str) -> str:
        """A JWT for ``username`` from SimpleAuthManager's login endpoint (``users=`` environments)."""
        import httpx

        resp = httpx.post(f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        resp.raise_for_status()
        return resp.json()["access_token"]

    def _http(self, method: str, path: str, *, body: Any = None, auth: bool = True) -> Any:
        import httpx

        headers = {}
        if auth:
            if self._token is None:
                self._token = self.token(*self.login) if self.login else None
            if self._token is None:
                resp = httpx.get(f"{self.api_url}/auth/token", timeout=30)
                resp.raise_for_status()
                self._token = resp.json()["access_token"]
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in range(4):
            resp = httpx.request(method, f"{self.api_url}{path}", json=body, headers=headers, timeout=60)
            # SQLite allows one writer at a time: under load the API server answers 500 "Database error"
            # (the transaction was rolled back). Asking again is safe and is what a user's retry does.
            if resp.status_code == 500 and "Database error" in resp.text and attempt < 3:
                log.warning("%s %s -> 500 Database error (%s); asking again", method, path, self.database_kind)
                time.sleep(1.0 + attempt)
                continue
            break
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def create_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create (or replace) an Airflow connection through the REST API (``host``, ``port``, ``login``, ...)."""
        try:
            self._http("DELETE", f"/api/v2/connections/{conn_id}")
        except RuntimeError:
            pass  # absent
        self._http("POST", "/api/v2/connections", body={"connection_id": conn_id, "conn_type": conn_type, **fields})

    # ------------------------------------------------------------------ DAGs and runs
    def deploy(self, path: Path, *, wait: bool = True, timeout: float = 120) -> list[str]:
        """Copy a DAG file (or every ``.py`` of a folder) into the DAGs folder; wait until parsed."""
        path = Path(path)
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for f in files:
            shutil.copy2(f, self.home / "dags" / f.name)
        names = [f.name for f in files]
        if wait:
            self.wait_for_dag_files(names, timeout=timeout)
        return names

    def wait_for_dag_files(self, names: Iterable[str], timeout: float = 120) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.sql("SELECT fileloc FROM dag WHERE is_stale = false")
            seen = {Path(r[0]).name for r in rows}
            if wanted <= seen:
                return
            time.sleep(0.5)
        raise TimeoutError(f"DAG files {sorted(wanted)} not parsed in {timeout}s")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT 1 FROM serialized_dag WHERE dag_id = :d", d=dag_id):
                return
            time.sleep(0.5)
        raise TimeoutError(f"DAG {dag_id!r} not serialized in {timeout}s:\n{self.component_log('dag-processor')}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a DAG run through the REST API; returns its run id."""
        self.wait_for_dag(dag_id)
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self._http("POST", f"/api/v2/dags/{dag_id}/dagRuns", body=body)["dag_run_id"]

    def clear(self, dag_id: str, run_id: str, task_ids: Iterable[str]) -> None:
        """Clear task instances as a user does from the UI (REST API ``clearTaskInstances``)."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": list(task_ids),
            "only_failed": False,
            "reset_dag_runs": True,
        }
        self._http("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body=body)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value of an XCom of a task instance (REST API, deserialized), or None when there is none."""
        from urllib.parse import quote

        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        path += f"?map_index={map_index}&deserialize=true&stringify=false"
        try:
            entry = self._http("GET", path)
        except RuntimeError as exc:
            if "-> 404" in str(exc):
                return None
            raise
        return entry.get("value")

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1) -> None:
        """Mark a task instance ``failed``/``success`` as a user does from the UI (REST API)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        self._http("PATCH", path, body={"new_state": state})

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.sql("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return rows[0][0] if rows else None

    def wait_for_run(
        self, dag_id: str, run_id: str, states: Iterable[str] = ("success", "failed"), timeout: float = 300
    ) -> str:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in wanted:
                return state
            time.sleep(0.3)
        raise TimeoutError(
            f"run {dag_id}/{run_id} is {state!r}, not in {sorted(wanted)} after {timeout}s\n"
            + self.diagnosis(dag_id, run_id)
        )

    def diagnosis(self, dag_id: str, run_id: str, lines: int = 60) -> str:
        """What a timed-out wait reports: the run's task instances and the resilience lines of the
        scheduler's log (the home is removed at stop, so a CI failure must carry them)."""
        out = []
        try:
            for row in self.sql(
                "SELECT task_id, map_index, try_number, state, hostname, pid, external_executor_id FROM task_instance"
                " WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index",
                d=dag_id,
                r=run_id,
            ):
                out.append("task instance: " + " ".join(map(str, row)))
        except Exception as exc:  # a diagnosis never hides the timeout
            out.append(f"task instances unreadable: {exc}")
        for name, keep in (("scheduler", lines), *((w, 15) for w in self.workers)):
            path = self.home / f"{name}.log"
            if not path.exists():
                continue
            text = path.read_text(errors="replace").splitlines()
            wanted = [ln for ln in text if "resilience" in ln or "ERROR" in ln or "WARNING" in ln]
            out.append(f"{name}.log, last {keep} resilience/WARNING/ERROR lines:")
            out.extend(wanted[-keep:])
        return "\n".join(out)

    # ------------------------------------------------------------------ task instances
    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskInstanceRow:
        rows = self.sql(
            "SELECT dag_id, run_id, task_id, map_index, try_number, state, max_tries, pid, hostname, id,"
            " start_date, end_date, retry_reason, external_executor_id FROM task_instance"
            " WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = :m",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        if not rows:
            raise LookupError(f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
        return _row(rows[0])

    def try_history(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[TaskInstanceRow]:
        """Every try of a task instance, oldest first: archived tries, then the current one."""
        rows = self.sql(
            "SELECT dag_id, run_id, task_id, map_index, try_number, state, max_tries, pid, hostname, task_instance_id,"
            " start_date, end_date, retry_reason, external_executor_id FROM task_instance_history"
            " WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = :m ORDER BY try_number",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        history = [_row(r) for r in rows]
        current = self.task_instance(dag_id, run_id, task_id, map_index)
        if not history or history[-1].try_number != current.try_number:
            history.append(current)
        return history

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str | None],
        *,
        try_number: int | None = None,
        map_index: int = -1,
        timeout: float = 120,
    ) -> TaskInstanceRow:
        """Wait until the task instance is in one of ``states`` (and at ``try_number``, if given)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        ti = None
        while time.monotonic() < deadline:
            try:
                ti = self.task_instance(dag_id, run_id, task_id, map_index)
            except LookupError:
                ti = None
            if ti is not None and ti.state in wanted and (try_number is None or ti.try_number == try_number):
                return ti
            time.sleep(0.2)
        raise TimeoutError(f"{dag_id}/{run_id}/{task_id}: {ti} not in {wanted} (try {try_number}) after {timeout}s")

    def task_processes(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskProcesses:
        """PIDs of the task runner (``task_instance.pid``) and of its supervisor (the runner's parent)."""
        import psutil

        ti = self.task_instance(dag_id, run_id, task_id, map_index)
        if ti.state != "running" or not ti.pid:
            raise LookupError(f"{dag_id}/{run_id}/{task_id} is {ti.state!r} with pid {ti.pid}: not running")
        runner = psutil.Process(ti.pid)
        supervisor = psutil.Process(runner.ppid())
        return TaskProcesses(
            runner=runner.pid, supervisor=supervisor.pid,
            runner_created=runner.create_time(), supervisor_created=supervisor.create_time(),
        )

    @staticmethod
    def end_grace(procs: TaskProcesses) -> bool:
        """The end of an eviction's grace period: SIGKILL the task's runner and supervisor — but only while
        that runner still lives. Under the LocalExecutor the supervisor is an executor worker process that
        takes the next task once this one has handed back; killing it then hits an unrelated task, or, if
        it is idle inside the executor's queue, leaves the queue's lock held and every other worker stuck.
        Returns whether anything was killed."""
        import psutil

        def same(pid: int, created: float | None) -> psutil.Process | None:
            try:
                proc = psutil.Process(pid)
                if created is not None and abs(proc.create_time() - created) > 0.01:
                    return None  # the PID was recycled
                return proc if proc.status() != psutil.STATUS_ZOMBIE else None
            except psutil.NoSuchProcess:
                return None

        runner = same(procs.runner, procs.runner_created)
        if runner is None:
            return False
        try:
            runner.kill()
            supervisor = same(procs.supervisor, procs.supervisor_created)
            if supervisor is not None:
                supervisor.kill()
        except psutil.NoSuchProcess:
            pass
        return True

    def signal_runner(self, dag_id: str, run_id: str, task_id: str, sig: int, map_index: int = -1) -> int:
        pid = self.task_processes(dag_id, run_id, task_id, map_index).runner
        os.kill(pid, sig)
        return pid

    def signal_supervisor(self, dag_id: str, run_id: str, task_id: str, sig: int, map_index: int = -1) -> int:
        pid = self.task_processes(dag_id, run_id, task_id, map_index).supervisor
        os.kill(pid, sig)
        return pid

    def state_store(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The task state store rows of one task instance, decoded."""
        rows = self.sql(
            "SELECT key, value FROM task_state_store WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            " AND map_index = :m",
            d=dag_id,
            r=run_id,
            t=task_id,
            m=map_index,
        )
        return {k: json.loads(v) for k, v in rows}

    def write_state_store_raw(self, dag_id: str, run_id: str, task_id: str, key: str, raw: str) -> None:
        """Overwrite one state-store row with raw text (to simulate damaged saved state in tests)."""
        self.sql(
            "UPDATE task_state_store SET value = :v WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            " AND key = :k",
            v=raw,
            d=dag_id,
            r=run_id,
            t=task_id,
            k=key,
            write=True,
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            base = base / f"map_index={map_index}"
        path = base / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ SQL
    def sql(self, statement: str, write: bool = False, **params: Any) -> list[tuple]:
        from sqlalchemy import create_engine, text

        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_pre_ping=True)
        with self._engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [] if write or not result.returns_rows else [tuple(r) for r in result]


def _when(value: Any) -> datetime | None:
    """Timestamps come back as datetimes from PostgreSQL and as text from SQLite: make them UTC datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _row(r: tuple) -> TaskInstanceRow:
    return TaskInstanceRow(
        dag_id=r[0],
        run_id=r[1],
        task_id=r[2],
        map_index=r[3],
        try_number=r[4],
        state=r[5],
        max_tries=r[6],
        pid=r[7],
        hostname=r[8],
        id=str(r[9]),
        start_date=_when(r[10]),
        end_date=_when(r[11]),
        retry_reason=r[12],
        external_executor_id=r[13] if len(r) > 13 else None,
    )


def kube_namespace() -> str:
    from airflow_resilience.testing.kube import NAMESPACE

    return NAMESPACE


def write_pod_template(path: Path, env: Mapping[str, str]) -> None:
    """The worker pod template: the ``base`` container carries this environment's configuration (as a
    pod template's ``env`` does in a real deployment); the node agent runs its ``args``."""
    keep = {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "PYTHON", "PATH", "VIRTUAL_ENV", "HOME", "LANG", "LC_"))}
    keep["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', os.defpath)}"
    keep["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"  # as in the provider's example template: a worker runs no executor
    template = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "placeholder-name", "annotations": {"airflow-resilience/home": env["AIRFLOW_HOME"]}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "base", "image": "airflow-resilience/node-agent-local:none",
                            "env": [{"name": k, "value": v} for k, v in sorted(keep.items())]}],
        },
    }
    path.write_text(json.dumps(template, indent=1))


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _pg_admin(statement: str) -> None:
    import psycopg2

    host, port = postgres_address()
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _stop_tree(pid: int, sig: int, timeout: float) -> None:
    """Signal ``pid`` and every descendant (found before signalling), then SIGKILL what is left."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
