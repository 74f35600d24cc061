"""A private PostgreSQL cluster for tests that need settings the shared server lacks (``wal_level=logical``).

``initdb`` into a temporary directory, ``pg_ctl start`` on a free loopback port with its own socket
directory, ``pg_ctl stop`` and removal at the end. Run as root (CI here), the cluster runs as the
``postgres`` system user, since PostgreSQL refuses to run as root. Where no PostgreSQL binaries are
installed, :class:`PostgresUnavailable` says so (tests skip with that reason).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from airflow_resilience.testing.local import free_port, postgres_bin_dir


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries (or no unprivileged user to run them as)."""


def _bin_dir() -> Path:
    found = postgres_bin_dir()
    if found is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in /usr/lib/postgresql")
    return found


@dataclass
class PrivatePostgres:
    """``with PrivatePostgres(settings={"wal_level": "logical"}) as pg: pg.dsn("postgres")``."""

    settings: dict[str, str] = field(default_factory=dict)
    port: int = 0
    root: Path | None = None
    _user: pwd.struct_passwd | None = None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        def demote() -> None:
            if self._user is not None:
                os.setgid(self._user.pw_gid)
                os.setuid(self._user.pw_uid)

        return subprocess.run(
            args, check=check, capture_output=True, text=True, preexec_fn=demote, timeout=120, cwd=self.root
        )

    def start(self) -> PrivatePostgres:
        bin_dir = _bin_dir()
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run a cluster as") from None
        self.root = Path(tempfile.mkdtemp(prefix="resilience-pg-"))
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.port = self.port or free_port()
        data = self.root / "data"
        self._run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "max_connections": "50",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        started = self._run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-o", opts, "-w", "start", check=False
        )
        if started.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()}\n{log[-2000:]}")
        self._bin = bin_dir
        return self

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: every connection is cut, the server comes back on the same port with the
        same settings (a database failover or maintenance restart, for control-plane drills)."""
        if self.root is None:
            raise RuntimeError("PrivatePostgres.restart: the cluster is not running (start it first)")
        # -l as at start: without it the new postmaster writes to (and holds open) pg_ctl's captured stdout
        done = self._run(str(_bin_dir() / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                         "-m", mode, "-w", "restart", check=False)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl restart -m {mode} failed: {done.stderr.strip()}\n{log[-2000:]}")

    def adopt(self) -> PrivatePostgres:
        """Take over a cluster another process started (``root`` and ``port`` given), so :meth:`stop` ends it."""
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            self._run(str(_bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = autocommit
        return conn

    def create_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
