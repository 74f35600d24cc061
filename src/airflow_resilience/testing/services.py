"""The services a real-Airflow test session needs: PostgreSQL and Redis, found or started on loopback.

How each is chosen (:func:`plan`), cheapest first:

1. an explicit address — ``AIRFLOW_RESILIENCE_TEST_PG=host:port`` (user ``postgres``, no password) or
   ``AIRFLOW_RESILIENCE_TEST_REDIS=host:port``: that server and no other; it must answer;
2. a private server started for the session from the installed binaries — PostgreSQL with ``initdb`` into
   a temporary directory (``fsync=off``, ``wal_level=logical``), Redis with ``redis-server`` (no
   persistence) — each on a free loopback port, stopped by PID at the end;
3. a server already answering on the standard port (``127.0.0.1:5432`` / ``127.0.0.1:6379``);
4. none: outside CI the suite falls back (SQLite only; the Celery and CDC tests skip) and says so in one
   line at the top of the run. With ``CI=true`` a missing service is a failure that names it.

:func:`start` publishes the chosen addresses in the two environment variables above, so the harness
(:mod:`airflow_resilience.testing.harness`) and every process it starts use the same servers.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow_resilience.testing.local import free_port, postgres_bin_dir  # noqa: F401 (re-exported)

log = logging.getLogger("airflow_resilience.testing")

PG_ENV = "AIRFLOW_RESILIENCE_TEST_PG"
REDIS_ENV = "AIRFLOW_RESILIENCE_TEST_REDIS"
DEFAULT_PG = ("127.0.0.1", 5432)
DEFAULT_REDIS = ("127.0.0.1", 6379)


class ServiceMissing(RuntimeError):
    """A service the run requires (``CI=true``) is neither reachable nor startable here."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def parse_address(value: str, *, key: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; a clear error naming ``key`` otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{key}={value!r}: expected host:port, e.g. 127.0.0.1:5432")
    return host, int(port)


def postgres_address() -> tuple[str, int]:
    """Where the session's PostgreSQL is (``AIRFLOW_RESILIENCE_TEST_PG``, else ``127.0.0.1:5432``)."""
    value = os.environ.get(PG_ENV)
    return parse_address(value, key=PG_ENV) if value else DEFAULT_PG


def redis_address() -> tuple[str, int]:
    """Where the session's Redis is (``AIRFLOW_RESILIENCE_TEST_REDIS``, else ``127.0.0.1:6379``)."""
    value = os.environ.get(REDIS_ENV)
    return parse_address(value, key=REDIS_ENV) if value else DEFAULT_REDIS


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def postgres_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts connections there and a login as ``postgres`` works."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError:
        return False
    try:
        import psycopg2

        conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=2)
        conn.close()
        return True
    except Exception:
        return False


def redis_server_bin() -> str | None:
    return shutil.which("redis-server")


@dataclass(frozen=True)
class Choice:
    """How one service will be provided: ``explicit``, ``private``, ``running`` or ``missing``."""

    service: str  # "PostgreSQL" | "Redis"
    how: str
    detail: str

    @property
    def available(self) -> bool:
        return self.how != "missing"

    def line(self) -> str:
        return f"{self.service}: {self.detail}"


def _plan_postgres() -> Choice:
    if os.environ.get(PG_ENV):
        host, port = postgres_address()
        if postgres_answers(host, port):
            return Choice("PostgreSQL", "explicit", f"{host}:{port} ({PG_ENV})")
        return Choice("PostgreSQL", "missing", f"nothing answers on {host}:{port} ({PG_ENV}) as user postgres")
    bin_dir = postgres_bin_dir()
    if bin_dir is not None:
        return Choice("PostgreSQL", "private", f"a private cluster from {bin_dir} on a free loopback port")
    if postgres_answers(*DEFAULT_PG):
        return Choice("PostgreSQL", "running", "the server answering on 127.0.0.1:5432")
    return Choice(
        "PostgreSQL",
        "missing",
        "no server binaries (initdb, pg_ctl, postgres) and nothing on 127.0.0.1:5432; "
        "install postgresql-15 (bash .ci/run does) or set " + PG_ENV,
    )


def _plan_redis() -> Choice:
    if os.environ.get(REDIS_ENV):
        host, port = redis_address()
        if redis_answers(host, port):
            return Choice("Redis", "explicit", f"{host}:{port} ({REDIS_ENV})")
        return Choice("Redis", "missing", f"nothing answers PING on {host}:{port} ({REDIS_ENV})")
    server = redis_server_bin()
    if server is not None:
        return Choice("Redis", "private", f"a private redis-server ({server}) on a free loopback port")
    if redis_answers(*DEFAULT_REDIS):
        return Choice("Redis", "running", "the server answering on 127.0.0.1:6379")
    return Choice(
        "Redis",
        "missing",
        "no redis-server binary and nothing on 127.0.0.1:6379; install redis-server (bash .ci/run does) or set "
        + REDIS_ENV,
    )


def plan() -> list[Choice]:
    """What the session will use for each service (cheap: no server is started)."""
    return [_plan_postgres(), _plan_redis()]


def fallback_line(choice: Choice) -> str:
    """The one line announcing what the suite does without ``choice`` (outside CI)."""
    if choice.service == "PostgreSQL":
        consequence = "real-Airflow tests run on SQLite only; the Celery and CDC tests skip"
    else:
        consequence = "the Celery tests skip"
    return f"airflow-resilience tests: {choice.service} unavailable ({choice.detail}): {consequence}"


def require(choices: list[Choice]) -> None:
    """With ``CI=true``, raise :class:`ServiceMissing` naming every missing service."""
    missing = [c for c in choices if not c.available]
    if missing and in_ci():
        raise ServiceMissing(
            "CI=true and a service the suite needs is missing: "
            + "; ".join(f"{c.service} — {c.detail}" for c in missing)
        )


@dataclass
class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence, in a temporary directory; stopped by PID."""

    port: int = 0
    root: Path | None = None
    _proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20) -> PrivateRedis:
        server = redis_server_bin()
        if server is None:
            raise ServiceMissing("Redis: no redis-server binary on PATH")
        self.root = Path(tempfile.mkdtemp(prefix="resilience-redis-"))
        self.port = self.port or free_port()
        return self._spawn(server, timeout)

    def restart(self, timeout: float = 20) -> None:
        """Stop the server (SIGTERM, by PID) and start it again on the same port, empty (no persistence): a
        broker restart for control-plane drills. Messages it held are gone, as with a Redis without AOF."""
        server = redis_server_bin()
        if self._proc is None or self.root is None or server is None:
            raise RuntimeError("PrivateRedis.restart: the server is not running (start it first)")
        self._terminate()
        self._spawn(server, timeout)

    def _terminate(self) -> None:
        """SIGTERM the server by PID; SIGKILL after 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)

    def _spawn(self, server: str, timeout: float) -> PrivateRedis:
        assert self.root is not None
        logfile = self.root / "redis.log"
        self._proc = subprocess.Popen(
            [
                server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--logfile", str(logfile), "--daemonize", "no", "--protected-mode", "yes",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = logfile.read_text() if logfile.exists() else ""
                code = self._proc.returncode
                self.stop()
                raise ServiceMissing(f"Redis: redis-server exited with {code}: {text[-1000:]}")
            if redis_answers("127.0.0.1", self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceMissing(f"Redis: redis-server did not answer PING on 127.0.0.1:{self.port} in {timeout:.0f}s")

    def stop(self) -> None:
        self._terminate()
        self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


#: The session's private PostgreSQL: room for a LocalExecutor and a CeleryExecutor deployment at once, and
#: logical decoding for the CDC code.
SUITE_POSTGRES_SETTINGS = {
    "max_connections": "300",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "shared_buffers": "128MB",
}


@dataclass
class SuiteServices:
    """Starts what :func:`plan` chose (once), publishes the addresses, stops what it started."""

    choices: list[Choice] = field(default_factory=plan)
    started: list[str] = field(default_factory=list)
    _pg: object | None = None
    _redis: PrivateRedis | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def _publish(self, key: str, value: str) -> None:
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def start(self) -> SuiteServices:
        require(self.choices)
        for choice in self.choices:
            try:
                self._start_one(choice)
            except Exception as exc:
                if in_ci():
                    raise ServiceMissing(f"CI=true and {choice.service} could not be started: {exc}") from exc
                log.warning("%s", fallback_line(Choice(choice.service, "missing", f"could not be started: {exc}")))
                self.choices = [c if c is not choice else Choice(c.service, "missing", str(exc)) for c in self.choices]
        return self

    def _start_one(self, choice: Choice) -> None:
        if choice.how == "private" and choice.service == "PostgreSQL":
            from airflow_resilience.testing.pgcluster import PrivatePostgres

            pg = PrivatePostgres(settings=dict(SUITE_POSTGRES_SETTINGS)).start()
            self._pg = pg
            self._publish(PG_ENV, f"127.0.0.1:{pg.port}")
            self.started.append(f"PostgreSQL on 127.0.0.1:{pg.port} (private cluster, {pg.root})")
        elif choice.how == "private" and choice.service == "Redis":
            self._redis = PrivateRedis().start()
            self._publish(REDIS_ENV, f"127.0.0.1:{self._redis.port}")
            self.started.append(f"Redis on 127.0.0.1:{self._redis.port} (private redis-server)")
        elif choice.how == "running" and choice.service == "PostgreSQL":
            self._publish(PG_ENV, "%s:%d" % DEFAULT_PG)
        elif choice.how == "running" and choice.service == "Redis":
            self._publish(REDIS_ENV, "%s:%d" % DEFAULT_REDIS)

    def available(self, service: str) -> bool:
        return any(c.service == service and c.available for c in self.choices)

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._pg is not None:
            self._pg.stop()  # type: ignore[attr-defined]
            self._pg = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()


_session_plan: list[Choice] | None = None


def session_plan() -> list[Choice]:
    """:func:`plan`, computed once per process (the suite's header, fixtures and parametrization agree)."""
    global _session_plan
    if _session_plan is None:
        _session_plan = plan()
    return _session_plan


def unavailable(what: str) -> None:
    """In a pytest test or fixture: a missing service is a failure under ``CI=true``, a skip elsewhere."""
    import pytest

    if in_ci():
        pytest.fail(f"CI=true: {what}", pytrace=False)
    pytest.skip(what)


# ---------------------------------------------------------------------------------------------- CLI
# ``python -m airflow_resilience.testing services start STATE`` starts what the plan chose, records PIDs and
# directories in the JSON file STATE and prints ``export`` lines for the shell; ``stop STATE`` stops exactly
# those processes. ``.ci/run`` brackets ``make test`` with the two.


def _cli_start(state: Path) -> int:
    import json

    choices = plan()
    try:
        require(choices)
    except ServiceMissing as exc:
        print(f"airflow-resilience services: {exc}", file=sys.stderr)
        return 1
    record: dict[str, object] = {}
    exports: dict[str, str] = {}
    for choice in choices:
        if choice.how == "private" and choice.service == "PostgreSQL":
            from airflow_resilience.testing.pgcluster import PrivatePostgres

            pg = PrivatePostgres(settings=dict(SUITE_POSTGRES_SETTINGS)).start()
            record["postgres"] = {"root": str(pg.root), "port": pg.port}
            exports[PG_ENV] = f"127.0.0.1:{pg.port}"
        elif choice.how == "private" and choice.service == "Redis":
            redis = PrivateRedis().start()
            record["redis"] = {"root": str(redis.root), "port": redis.port, "pid": redis.pid}
            redis._proc = None  # detached: ``stop`` ends it by the recorded PID
            exports[REDIS_ENV] = f"127.0.0.1:{redis.port}"
        elif choice.how == "running":
            exports[PG_ENV if choice.service == "PostgreSQL" else REDIS_ENV] = "%s:%d" % (
                DEFAULT_PG if choice.service == "PostgreSQL" else DEFAULT_REDIS
            )
        state.write_text(json.dumps(record))
    for key, value in exports.items():
        print(f"export {key}={_shell_quote(value)}")
    for choice in choices:
        print(f"echo {_shell_quote('airflow-resilience services: ' + choice.line())}")
    return 0


def _cli_stop(state: Path) -> int:
    import json
    import signal

    if not state.exists():
        return 0
    record = json.loads(state.read_text() or "{}")
    redis = record.get("redis")
    if redis:
        pid = int(redis["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"redis-server" in cmdline:  # still ours, not a recycled PID
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        shutil.rmtree(redis["root"], ignore_errors=True)
    pg = record.get("postgres")
    if pg:
        from airflow_resilience.testing.pgcluster import PrivatePostgres

        cluster = PrivatePostgres(port=int(pg["port"]), root=Path(pg["root"]))
        cluster.adopt()
        cluster.stop()
    state.unlink()
    return 0


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m airflow_resilience.testing services")
    parser.add_argument("action", choices=["start", "stop", "plan"])
    parser.add_argument("state", type=Path, nargs="?", default=Path(".services.json"))
    args = parser.parse_args(argv)
    if args.action == "plan":
        for choice in plan():
            print(choice.line())
        return 0
    return _cli_start(args.state) if args.action == "start" else _cli_stop(args.state)

