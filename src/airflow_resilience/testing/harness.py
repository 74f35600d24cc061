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

This module holds the lifecycle (the home, the configuration, the components). The rest of
:class:`AirflowEnvironment` comes from three mixins, one idea each: :mod:`.processes` (workers, nodes, pods,
a task's processes and signals), :mod:`.rest` (the REST API: DAGs, runs, waits with a diagnosis) and
:mod:`.records` (the metadata database: task instances, tries, state-store rows, logs).
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
from pathlib import Path
from typing import Any

from airflow_resilience.testing.services import (
    free_port,
    postgres_address,
    postgres_answers,
    redis_address,
    redis_answers,
)

from airflow_resilience.testing.processes import ProcessControl, TaskProcesses, _stop_tree, kube_namespace
from airflow_resilience.testing.records import MetadataRecords, TaskInstanceRow
from airflow_resilience.testing.rest import FINISHED, RestClient

__all__ = [
    "COMPONENTS", "FINISHED", "WORKER_PREFIX", "AirflowEnvironment", "EnvironmentUnavailable", "TaskInstanceRow",
    "TaskProcesses", "kube_namespace", "postgres_reachable", "redis_reachable", "write_pod_template",
]

log = logging.getLogger("airflow_resilience.testing")

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
WORKER_PREFIX = "worker-"


class EnvironmentUnavailable(RuntimeError):
    """A service the requested environment needs (PostgreSQL, Redis) is not reachable."""


def redis_reachable(host: str | None = None, port: int | None = None, timeout: float = 0.5) -> bool:
    """True when Redis answers PING at ``host:port`` (default: the session's, see :mod:`.services`)."""
    default_host, default_port = redis_address()
    return redis_answers(host or default_host, port or default_port, timeout)


def postgres_reachable(host: str | None = None, port: int | None = None, timeout: float = 0.5) -> bool:
    """True when PostgreSQL accepts a login as ``postgres`` at ``host:port`` (default: the session's)."""
    default_host, default_port = postgres_address()
    return postgres_answers(host or default_host, port or default_port, timeout)


@dataclass
class AirflowEnvironment(ProcessControl, RestClient, MetadataRecords):
    """A running Airflow 3 (LocalExecutor) for tests. Build with :meth:`create`, stop with :meth:`stop`."""

    home: Path
    database_url: str
    database_kind: str
    api_port: int
    env: dict[str, str]
    _owned_home: bool = False
    _postgres_db: str | None = None
    #: The PostgreSQL server (host, port) this environment's database lives on (``None``: the session's).
    postgres: tuple[str, int] | None = None
    #: Servers this environment may restart (control-plane drills): a private PostgreSQL cluster
    #: (:class:`~airflow_resilience.testing.pgcluster.PrivatePostgres`) and a private Redis
    #: (:class:`~airflow_resilience.testing.services.PrivateRedis`), each with ``restart()``.
    postgres_server: Any = None
    redis_server: Any = None
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: keep_alive(): the watchdog thread and its stop flag; the components it restarted (name, exit code, when)
    _watchdog: Any = None
    restarts: list[tuple[str, int, float]] = field(default_factory=list)
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
        postgres_server: Any = None,
        redis_server: Any = None,
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
        :param postgres_server: a running private PostgreSQL cluster
            (:class:`~airflow_resilience.testing.pgcluster.PrivatePostgres`) to put the database on instead of the
            session's; a control-plane drill may restart it (``db_restart``). Not stopped with the environment.
        :param redis_server: likewise a running :class:`~airflow_resilience.testing.services.PrivateRedis` for the
            Celery broker (``broker_restart``).
        """
        pg_address = ("127.0.0.1", postgres_server.port) if postgres_server is not None else postgres_address()
        redis_addr = ("127.0.0.1", redis_server.port) if redis_server is not None else redis_address()
        if executor not in ("local", "celery", "kubernetes"):
            raise ValueError(f"executor must be 'local', 'celery' or 'kubernetes', got {executor!r}")
        if executor == "kubernetes":
            if database == "sqlite" or not postgres_reachable(*pg_address):
                raise EnvironmentUnavailable("KubernetesExecutor needs PostgreSQL on %s:%d (not SQLite)" % pg_address)
            database = "postgres"
        if executor == "celery":
            if database == "sqlite" or not postgres_reachable(*pg_address):
                raise EnvironmentUnavailable("CeleryExecutor needs PostgreSQL on %s:%d (not SQLite)" % pg_address)
            if not redis_reachable(*redis_addr):
                raise EnvironmentUnavailable("CeleryExecutor tests need Redis on %s:%d" % redis_addr)
            database = "postgres"
        owned = home is None
        home = Path(tempfile.mkdtemp(prefix="airflow-resilience-")) if home is None else Path(home)
        home.mkdir(parents=True, exist_ok=True)
        (home / "dags").mkdir(exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        choice = database or os.environ.get("AIRFLOW_RESILIENCE_TEST_DB") or "auto"
        pg_db = None
        if choice == "auto":
            choice = "postgres" if postgres_reachable(*pg_address) else "sqlite"
            if choice == "sqlite":
                log.warning("PostgreSQL is not reachable on %s:%d: using SQLite", *pg_address)
        if choice == "postgres":
            pg_db = f"airflow_resilience_{secrets.token_hex(4)}"
            _pg_admin(f'CREATE DATABASE "{pg_db}"', pg_address)
            pg_host, pg_port = pg_address
            url = f"postgresql+psycopg2://postgres@{pg_host}:{pg_port}/{pg_db}"
        elif choice == "sqlite":
            url = f"sqlite:///{home / 'airflow.db'}"
        else:
            raise ValueError(f"database must be 'postgres' or 'sqlite', got {choice!r}")
        port = free_port()
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
                    "AIRFLOW__CELERY__BROKER_URL": "redis://%s:%d/" % redis_addr + str(1 + secrets.randbelow(15)),
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://postgres@%s:%d/" % pg_address + str(pg_db),
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
            postgres=pg_address if pg_db else None,
            postgres_server=postgres_server,
            redis_server=redis_server,
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


    def component_pid(self, name: str) -> int:
        return self._procs[name].pid

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            _stop_tree(proc.pid, sig, timeout)
            proc.wait(timeout=5)

    def keep_alive(self, interval: float = 1.0) -> None:
        """Restart any component that exits on its own, as systemd (``Restart=always``) or Kubernetes does for
        a deployment: Airflow's scheduler exits when it loses its database, and in production it is started
        again. For control-plane drills. A component stopped with :meth:`stop_component` stays stopped."""
        import threading

        if self._watchdog is not None:
            return
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                for name, proc in list(self._procs.items()):
                    code = proc.poll()
                    if code is not None and not stop.is_set() and self._procs.get(name) is proc:
                        log.warning("%s exited with %s: starting it again (keep_alive)", name, code)
                        self.restarts.append((name, code, time.time()))
                        try:
                            self.start_component(name)
                        except Exception:  # noqa: BLE001 - tried again next round
                            log.exception("could not restart %s", name)

        thread = threading.Thread(target=watch, daemon=True, name="airflow-keep-alive")
        self._watchdog = (thread, stop)
        thread.start()

    def stop(self) -> None:
        """Stop every process this environment started (by PID, with its descendants), drop the DB."""
        if self._watchdog is not None:
            thread, flag = self._watchdog
            flag.set()
            thread.join(timeout=5)
            self._watchdog = None
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
                _pg_admin(f'DROP DATABASE IF EXISTS "{self._postgres_db}" WITH (FORCE)', self.postgres)
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


def _pg_admin(statement: str, address: tuple[str, int] | None = None) -> None:
    import psycopg2

    host, port = address or postgres_address()
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
