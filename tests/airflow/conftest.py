"""One real Airflow per database for the whole session (PostgreSQL when available, and SQLite).

PostgreSQL and Redis are started for the session by :class:`~airflow_resilience.testing.services.SuiteServices`
at the first real-Airflow test (the top of the run says which servers are used)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_resilience.testing import services

DAGS = Path(__file__).parent / "dags"

_PG_PLANNED = any(c.service == "PostgreSQL" and c.available for c in services.session_plan())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Which Airflow a real-Airflow test runs on. PostgreSQL (what production runs) for every test; the tests
    marked ``sqlite_too`` (the semantics SQLite could change: locking, fencing, DDL, the core resume paths)
    on the SQLite Airflow too. Without a PostgreSQL server (outside CI, announced) all run on SQLite. A test
    that parametrizes ``airflow_database`` itself keeps its own choice."""
    if "airflow_database" not in metafunc.fixturenames:
        return
    if any("airflow_database" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return
    if not _PG_PLANNED:
        databases = ["sqlite"]
    elif metafunc.definition.get_closest_marker("sqlite_too"):
        databases = ["postgres", "sqlite"]
    else:
        databases = ["postgres"]
    metafunc.parametrize("airflow_database", databases, indirect=True, scope="session")


@pytest.fixture(scope="session")
def suite_services():
    """PostgreSQL and Redis for the session: started once (private servers on free loopback ports where the
    binaries are installed), their addresses published to the harness, stopped by PID at the end."""
    started = services.SuiteServices(choices=services.session_plan()).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def kube_cluster():
    """One real Kubernetes control plane with two node agents for the session (binaries built once per
    version and cached outside the checkout: ``make k8s``). Without Go and without a built cache it is a
    skip, or a failure naming it under ``CI=true``."""
    from airflow_resilience.testing.kube import KubeCluster
    from airflow_resilience.testing.kube.build import cached

    if cached() is None and __import__("shutil").which("go") is None:
        services.unavailable("Kubernetes control plane: no cached build and no Go toolchain to build one (make k8s)")
    try:
        cluster = KubeCluster.start(nodes=2)
    except Exception as exc:  # noqa: BLE001 - say what failed
        services.unavailable(f"Kubernetes control plane did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def airflow_dags() -> list[Path]:
    from airflow_resilience.drills.runner import DRILL_DAGS

    return [DAGS, DRILL_DAGS, Path(__file__).parent / "harm_dags"]


class StatsdSink:
    """A UDP socket on loopback that keeps every StatsD line the session's Airflow sends."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            self.lines.extend(data.decode(errors="replace").splitlines())

    def mark(self) -> int:
        """A position in what was received, for ``since=``: only what arrives after it counts."""
        return len(self.lines)

    def values(self, name: str, kind: str, since: int = 0) -> list[float]:
        """The values of ``name`` (without the ``airflow.`` prefix, InfluxDB tags ignored) received so far as
        StatsD type ``kind`` (``c``, ``ms``, ``g``), oldest first."""
        found = []
        for line in self.lines[since:]:
            metric, _, rest = line.partition(":")
            fields = rest.split("|")
            if metric.split(",")[0] == f"airflow.{name}" and len(fields) >= 2 and fields[1] == kind:
                found.append(float(fields[0]))
        return found

    def count(self, name: str, since: int = 0) -> int:
        """Sum of the counter ``name`` (without the ``airflow.`` prefix) received so far."""
        return int(sum(self.values(name, "c", since)))

    def timings(self, name: str, since: int = 0) -> list[float]:
        """The timer ``name``'s values (milliseconds) received so far."""
        return self.values(name, "ms", since)

    def gauges(self, name: str, since: int = 0) -> list[float]:
        """The gauge ``name``'s values received so far."""
        return self.values(name, "g", since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="session")
def statsd_sink():
    sink = StatsdSink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture(scope="session")
def job_server():
    """The loopback Databricks Jobs API server the operator tests' DAGs talk to (one per session)."""
    from airflow_resilience.testing.jobserver import JobServer

    with JobServer() as server:
        yield server


@pytest.fixture(scope="session")
def airflow_config(job_server, statsd_sink) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_sink.port),
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": job_server.airflow_connection(),
        "LOOPBACK_JOBS_URL": job_server.url,
        # Short so the fencing test (a frozen attempt) does not wait the stock 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__RESILIENCE__LOST_WORKER_CHECK_INTERVAL": "1",
        # The DAG files do not change during the session: re-parse them rarely. Every parse writes to the
        # metadata DB, and on SQLite (one writer at a time) that churn made the API server answer
        # "Database error" under the heavier tests.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    }


@pytest.fixture(scope="session")
def airflow_database(request: pytest.FixtureRequest, suite_services) -> str:
    if request.param == "postgres" and not suite_services.available("PostgreSQL"):
        services.unavailable("PostgreSQL could not be started for this session")
    return request.param


class Marks:
    """Progress marks written by the test DAGs (JSON lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.read():
                if pred(event):
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"no mark matching the condition in {timeout}s; marks: {self.read()[-5:]}")

    def of(self, ev: str, t: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.read() if e["ev"] == ev and (t is None or e["t"] == t)]


@pytest.fixture
def marks(tmp_path: Path) -> Marks:
    return Marks(tmp_path / "marks.jsonl")


@pytest.fixture(scope="module")
def module_marks(tmp_path_factory: pytest.TempPathFactory) -> Marks:
    """Marks of a run that several tests of a module read (a module-scoped fixture runs it once)."""
    return Marks(tmp_path_factory.mktemp("marks") / "marks.jsonl")
